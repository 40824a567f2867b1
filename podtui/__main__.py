from podtui.cli import main

main()

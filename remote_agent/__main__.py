from remote_agent.cli import main

main()

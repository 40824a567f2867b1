from remote_agent.boot import main

if __name__ == "__main__":
    main()

"""The agent's socket server: the daemon, its request handlers and settings. Kept free of imports."""

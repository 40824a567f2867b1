"""The engine child: its supervisor, process, adapters and ctx parsing. Kept free of imports, so
`remote_agent.engine.ctx` loads without the supervisor."""

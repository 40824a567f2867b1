"""The serverless worker: the same image as a Runpod Serverless queue worker (MODE_TO_RUN=serverless).

`remote-agent boot` starts the daemon (which supervises the engine exactly as in a pod) and then
`remote-agent serverless-worker`, which waits until the engine is ready and runs Runpod's own SDK
job loop (`runpod.serverless.start`) with an async-generator handler that proxies every job to the
engine over httpx (SERVERLESS.md §1, §7.1). Modules:

- config.py   MAX_CONCURRENCY / CONCURRENCY_MODIFIER / REQUEST_TIMEOUT (standard library; boot uses it)
- jobs.py     the job inputs: seed 001's prompt + answerType, the OpenAI passthrough (§2.1)
- errors.py   JobError: the one structured error a failed job carries (§1.4's str() trap avoided)
- daemon_link.py / direct_link.py   where the engine is and why it failed (the daemon, or a fixed URL)
- handler.py  the async-generator handler
- worker.py   the entry point; the ONLY module that imports runpod (139 MB, 1.65 s), and only when run

Nothing here is imported on the pod path: an import-linter contract keeps `runpod` out of every
other remote_agent module and out of podtui.
"""

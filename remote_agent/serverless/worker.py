"""`remote-agent serverless-worker`: wait for the engine, then run Runpod's SDK job loop.

Boot starts it in serverless mode beside the daemon (`--socket`); tests and local use point it at
an engine directly (`--engine-url`, key from API_KEY). Order, as worker-vllm does it (SERVERLESS.md
§2.2, §7.1): the engine first — no job is taken before it serves, or has failed for good, in which
case each job fails with the daemon's reason instead of the worker crash-looping — then `import
runpod` and `runpod.serverless.start` with the async handler, a constant concurrency_modifier and
return_aggregate_stream on.

This is the only module that imports runpod (139 MB and 1.65 s of import), inside main_from_args,
after the environment the SDK reads at import is final (§1.6: the job URLs are module constants).
Outside a Runpod worker (no RUNPOD_WEBHOOK_GET_JOB) the SDK would run its one-shot local test mode
and exit; the worker refuses that clearly instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from remote_agent.engine_key import is_opt_out
from remote_agent.serverless.config import ServerlessConfigError, concurrency_from, request_timeout_from

DEFAULT_ENGINE_WAIT_S = 1800.0  # Runpod marks a worker unhealthy after 7 min unless RUNPOD_INIT_TIMEOUT says more
log = logging.getLogger("remote_agent.serverless")


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The `serverless-worker` flags; the rest comes from the environment (MAX_CONCURRENCY or
    CONCURRENCY_MODIFIER, REQUEST_TIMEOUT, API_KEY with --engine-url, and the SDK's RUNPOD_*)."""
    add = parser.add_argument
    add("--socket", help="the agent daemon's socket (env REMOTE_AGENT_SOCKET; default as for the daemon)")
    add("--engine-url", metavar="URL",
        help="serve jobs from the engine at URL (http://127.0.0.1:PORT) instead of asking the daemon; its "
        "key comes from API_KEY")
    add("--engine", default="llama-server", help="with --engine-url: llama-server (default) or koboldcpp")
    add("--engine-wait", type=float, default=DEFAULT_ENGINE_WAIT_S, metavar="SECONDS",
        help="the longest to wait for the engine before taking jobs anyway (default: %(default)s)")


class _Masked(logging.Filter):
    """Secret values never reach the worker's log lines (the pod log)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for secret in self.secrets:
            text = text.replace(secret, "***")
        record.msg, record.args = text.replace("\n", "\\n"), None
        return True


def _setup_logging(secrets: list[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s remote-agent worker %(levelname)s %(message)s"))
    handler.addFilter(_Masked(secrets))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    # httpx logs every request at INFO through the root logger the SDK's imports set up: one line per
    # job in the pod log, with nothing a person needs (the job lines above say what went wrong).
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _link(args: argparse.Namespace, api_key: str | None):
    if args.engine_url:
        from remote_agent.serverless.direct_link import DirectLink

        return DirectLink(args.engine_url, args.engine, api_key)
    from remote_agent.paths import default_socket_path
    from remote_agent.serverless.daemon_link import DaemonLink

    return DaemonLink(Path(args.socket) if args.socket else default_socket_path())


def main_from_args(args: argparse.Namespace) -> int:
    """Run the worker until the SDK's loop ends (SIGTERM: it finishes the jobs in flight); returns the
    exit status: 0, or 2 after printing what to fix for bad input."""
    env = os.environ
    raw_key = env.get("API_KEY", "").strip()
    api_key = None if not raw_key or is_opt_out(raw_key) else raw_key
    _setup_logging([api_key or "", env.get("RUNPOD_AI_API_KEY", ""), env.get("HF_TOKEN", "")])
    try:
        concurrency = concurrency_from(env)
        timeout_s = request_timeout_from(env)
        link = _link(args, api_key)
    except (ServerlessConfigError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    if not env.get("RUNPOD_WEBHOOK_GET_JOB"):
        log.error("RUNPOD_WEBHOOK_GET_JOB is not set, so this is not running as a Runpod serverless worker "
                  "(the SDK would run one local test job and exit). Deploy the image as a serverless endpoint "
                  "(podtui endpoints create), or run it with MODE_TO_RUN=pod")
        return 2
    log.info("serverless worker: %d job(s) at once (%s), engine answers within %g s (REQUEST_TIMEOUT)",
             concurrency.value, concurrency.source, timeout_s)
    asyncio.run(link.settle(args.engine_wait, lambda line: log.info("%s", line)))

    from remote_agent.serverless.handler import JobHandler

    handler = JobHandler(link, request_timeout_s=timeout_s, concurrency=concurrency.value)
    # start() parses sys.argv with its own flags (--rp_serve_api, --test_input, …): give it none of ours.
    sys.argv = sys.argv[:1]
    import runpod  # here and only here: see the module docstring

    n = concurrency.value
    runpod.serverless.start({"handler": handler.handle, "concurrency_modifier": lambda _current: n,
                             "return_aggregate_stream": True})
    return 0

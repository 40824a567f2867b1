"""JobError: why a job failed, in one form a client can parse.

The SDK turns an error a generator handler yields as `{"error": X}` into the job's `error` field as
`str(X)` (SERVERLESS.md §1.4, runpod rp_job.py `handle_job`): a dict would arrive as its Python
repr, which no client can parse. So the handler yields X as a JSON *string*, and the job's `error`
(in `/status`, `/runsync`, and whatever the platform answers on `/openai/v1/...`) is exactly this
JSON text:

    {"kind": "crashed", "message": "…", "fix": "…", "engine": "llama-server", "engine_state": "failed"}

`kind` is the engine failure kind the daemon classified (remote_agent/engine/adapters/classify.py:
oom, bad_model, crashed, health_timeout, …; a model error's code such as not_found or disk_full), or
one of the worker's own kinds below. Raising instead would put a Python traceback in front of the
client (`"handler: … traceback: …"`, §1.4), so the handler never lets an exception escape.
Standard library only.
"""

from __future__ import annotations

import json
from typing import Any

# The worker's own kinds (the daemon's failure kinds pass through as they are).
BAD_INPUT = "bad_input"  # the job's input is none of the accepted shapes
ENGINE_ERROR = "engine_error"  # the engine answered with an HTTP error (its own error in "engine_error")
ENGINE_UNREACHABLE = "engine_unreachable"  # nothing answers on the engine's port, and nobody says why
ENGINE_LOST = "engine_lost"  # the engine cut the answer off but still runs
ENGINE_TIMEOUT = "engine_timeout"  # no answer within REQUEST_TIMEOUT
ENGINE_NOT_READY = "engine_not_ready"  # still starting (or restarting) after the wait
AGENT_UNREACHABLE = "agent_unreachable"  # the daemon's socket does not answer
INTERNAL = "internal"  # a bug in the worker; its traceback is in the worker's log, not in the job

WORKER_KINDS = (BAD_INPUT, ENGINE_ERROR, ENGINE_UNREACHABLE, ENGINE_LOST, ENGINE_TIMEOUT, ENGINE_NOT_READY,
                AGENT_UNREACHABLE, INTERNAL)


class JobError(Exception):
    """A job that cannot be served: `kind` (a failure kind, see the module docstring), `message` (what
    happened), `fix` (what the user can do; may be empty), and `details` (more JSON fields, e.g.
    engine, engine_state, status, engine_error). `str(exc)` is the message."""

    def __init__(self, kind: str, message: str, fix: str = "", **details: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.fix = fix
        self.details = {k: v for k, v in details.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        """{"kind", "message", "fix"?, **details}: the parsed form of wire()."""
        return {"kind": self.kind, "message": self.message, **({"fix": self.fix} if self.fix else {}),
                **self.details}

    def wire(self) -> str:
        """The JSON text the job's error field carries (see the module docstring)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def parse_job_error(text: str) -> dict[str, Any] | None:
    """The dict a job's error field holds when this worker wrote it; None for any other text (an
    SDK-made error such as a failed handler's traceback, or a platform timeout)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("kind"), str) else None

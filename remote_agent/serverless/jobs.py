"""The job inputs the worker accepts, turned into one engine request. Standard library only.

1. Seed 001 (justinwlin's Runpod-GPU-And-Serverless-Base): `{"prompt": "…", "answerType":
   "stream"|"normal"}`. The prompt is the whole text the model continues ("construct the prompt
   f"{system_prompt} {user_prompt}" and send it"), so it goes to the engine's `/v1/completions`, not
   to chat. "stream" yields `{"text": part}` per piece, "normal" one `{"text": whole}`; answerType
   defaults to normal. A few sampling fields may ride along (SEED_OPTIONS); any other key is refused
   by name, so a typo is not silently ignored.
2. Runpod's OpenAI passthrough (SERVERLESS.md §2.1): a request to `/v2/<ep>/openai/v1/<path>`
   arrives as `{"openai_route": "/v1/<path>", "openai_input": {…}}`. A missing or empty
   openai_input is a GET (`GET /openai/v1/models` has no body; worker-vllm's tests pin this), anything
   else a POST of openai_input as JSON; `"stream": true` in it streams the engine's SSE text through
   chunk by chunk. Other keys beside the two are ignored: the platform writes this shape, and may add
   fields we do not know about.

Anything else is a JobError(bad_input) naming both shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from remote_agent.serverless.errors import BAD_INPUT, JobError

SEED_ANSWER_TYPES = ("stream", "normal")
SEED_OPTIONS = ("max_tokens", "temperature", "top_p", "top_k", "min_p", "stop", "seed", "repeat_penalty")
SEED_ROUTE = "/v1/completions"
ROUTE_SHAPE = re.compile(r"/v1(/[A-Za-z0-9_.\-]+)+")  # no query, no "..", nothing outside /v1/
SHAPES = ('{"prompt": "…", "answerType": "stream"|"normal"} (seed 001), or {"openai_route": "/v1/…", '
          '"openai_input": {…}} (what Runpod sends for https://api.runpod.ai/v2/<endpoint>/openai/v1/…)')


@dataclass(frozen=True)
class EngineCall:
    """One request to the engine: method ("GET"|"POST"), path, JSON body (None for a GET), whether the
    answer streams (SSE), and for a seed-001 job its answerType (None: an OpenAI passthrough, whose
    answer goes back as the engine wrote it)."""
    method: str
    path: str
    body: dict[str, Any] | None
    stream: bool
    seed: str | None = None


def _bad(message: str) -> JobError:
    return JobError(BAD_INPUT, message, f"send the job input as {SHAPES}")


def parse_job_input(job_input: Any) -> EngineCall:
    """The EngineCall a job's `input` asks for; raises JobError(bad_input) naming what is wrong."""
    if not isinstance(job_input, dict):
        raise _bad(f"the job input is a {type(job_input).__name__}, not a JSON object")
    if "openai_route" in job_input:
        return _openai_call(job_input)
    if "prompt" in job_input:
        return _seed_call(job_input)
    keys = ", ".join(sorted(job_input)) or "none"
    raise _bad(f"the job input has neither \"prompt\" nor \"openai_route\" (its keys: {keys})")


def _openai_call(job_input: dict) -> EngineCall:
    route = job_input.get("openai_route")
    if not isinstance(route, str) or not ROUTE_SHAPE.fullmatch(route) or ".." in route:
        raise _bad(f"openai_route {route!r} is not an OpenAI path such as /v1/chat/completions, "
                   "/v1/completions or /v1/models")
    body = job_input.get("openai_input")
    if body is None or body == {}:
        return EngineCall("GET", route, None, stream=False)
    if not isinstance(body, dict):
        raise _bad(f"openai_input is a {type(body).__name__}; it must be the OpenAI request body (a JSON "
                   "object), or absent for a GET such as /v1/models")
    return EngineCall("POST", route, body, stream=bool(body.get("stream")))


def _seed_call(job_input: dict) -> EngineCall:
    prompt = job_input.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _bad("prompt must be a non-empty string: the whole text the model continues")
    answer = job_input.get("answerType", "normal")
    if answer not in SEED_ANSWER_TYPES:
        raise _bad(f"answerType {answer!r} must be \"stream\" or \"normal\"")
    unknown = sorted(set(job_input) - {"prompt", "answerType", *SEED_OPTIONS})
    if unknown:
        raise _bad(f"unknown key(s) {', '.join(unknown)} beside prompt; allowed: answerType, "
                   f"{', '.join(SEED_OPTIONS)}")
    options = {k: job_input[k] for k in SEED_OPTIONS if k in job_input}
    body = {"prompt": prompt, **options, "stream": answer == "stream"}
    return EngineCall("POST", SEED_ROUTE, body, stream=answer == "stream", seed=answer)

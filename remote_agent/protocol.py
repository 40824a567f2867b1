"""The agent's wire protocol: JSON lines, version 1. Standard library only.

podtui imports this module (and nothing else from remote_agent) to speak to the daemon.

    server greets   {"hello": "remote-agent", "protocol": 1, "version": "…"}
    request         {"id": 7, "method": "engine.swap", "params": {…}}
    result          {"id": 7, "result": …}
    error           {"id": 7, "error": {"code": "bad_request", "message": "…"}}
    stream event    {"id": 7, "event": "log"|"progress"|"state", "data": {…}}   (before the result)
    cancel          {"method": "cancel", "params": {"id": 7}}

A line that cannot be parsed gets an error with "id": null. The daemon never exits on bad input.

The engine's API key (remote_agent/engine_key.py) travels only on this channel, which only SSH or
the local socket (0600) reaches, and only when asked for:

    engine.api_key  → {"api_key": "…" | null, "source": "generated"|"API_KEY"|"LLAMA_API_KEY"|"ARGS"|
                       "API_KEY=none", "required": true|false}

`status` says only whether a key is required (`api_key_required`) and, when the user opted out,
why in `warnings`; scripts print and poll `status`, so the key itself is never in it. An agent
older than the key answers `engine.api_key` with unknown_method: its engine runs keyless.

Jupyter's token (pod mode with JUPYTER=1, remote_agent/jupyter.py) travels the same way:

    jupyter.token   → {"token": "…" | null, "state": {"state": "starting"|"running"|"restarting"|"paused"|
                       "stopped", "port": 8888, "pid": …, "restarts": 0, "last_error": …, "url": …} | null}

`status` carries the same "jupyter" state (null when boot never started Jupyter), never the token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1 << 20  # a request line longer than this is refused, not buffered

# Error codes (the "code" of an error object).
BAD_JSON = "bad_json"
BAD_REQUEST = "bad_request"
LINE_TOO_LONG = "line_too_long"
UNKNOWN_METHOD = "unknown_method"
BAD_PARAMS = "bad_params"
CANCELLED = "cancelled"
BUSY = "busy"
INTERNAL = "internal"

EVENT_KINDS = ("log", "progress", "state")


class WireError(Exception):
    """The root of every error the daemon answers with: it goes on the wire as
    {"code": code, "message": message}. `str(exc)` is the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ProtocolError(WireError):
    """A line that is not a valid protocol message; `code` is one of the error codes above."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(code, message)
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    id: int | str | None
    method: str
    params: dict[str, Any] = field(default_factory=dict)


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line of compact UTF-8 JSON, newline-terminated."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def hello(version: str) -> dict[str, Any]:
    return {"hello": "remote-agent", "protocol": PROTOCOL_VERSION, "version": version}


def result(request_id: Any, value: Any) -> dict[str, Any]:
    return {"id": request_id, "result": value}


def error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "error": {"code": code, "message": message}}


def event(request_id: Any, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "event": kind, "data": data}


def decode_line(line: bytes) -> dict[str, Any]:
    """Parse one received line into a JSON object (any message kind)."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(LINE_TOO_LONG, f"line of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
    try:
        message = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError(BAD_JSON, f"line is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(BAD_JSON, f"line is not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_REQUEST, f"a message must be a JSON object, not {type(message).__name__}")
    return message


def parse_request(line: bytes) -> Request:
    """Parse and validate one request line; raises ProtocolError with the code to answer."""
    message = decode_line(line)
    request_id = message.get("id")
    if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, (int, str))):
        raise ProtocolError(BAD_REQUEST, "id must be an integer or a string")
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise ProtocolError(BAD_REQUEST, "method must be a non-empty string", request_id)
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError(BAD_PARAMS, "params must be a JSON object", request_id)
    return Request(request_id, method, params)

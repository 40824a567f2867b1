"""The one error type the models package raises: a stable `.code` for programs, a message for people."""

from __future__ import annotations

from remote_agent.protocol import WireError

CODES = frozenset(
    {"bad_ref", "not_found", "needs_token", "disk_full", "checksum", "offline", "not_gguf", "network", "cancelled"}
)


class ModelError(WireError):
    """`str(e)` is the user-facing message naming the problem and the fix; `.code` is one of CODES."""

    def __init__(self, code: str, message: str):
        if code not in CODES:
            raise ValueError(f"unknown ModelError code {code!r}")
        super().__init__(code, message)

    def to_dict(self) -> dict:
        return {"code": self.code, "message": str(self)}

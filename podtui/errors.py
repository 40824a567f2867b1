"""Typed errors with a user-facing message and the fix. The CLI and the TUI render them."""

from __future__ import annotations

# Exit codes of the CLI contract (ARCHITECTURE.md).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_HOST_KEY = 3
EXIT_CONNECT = 4


class PodtuiError(Exception):
    """An error a user can act on: what went wrong (title) and what to do about it (fix)."""

    exit_code = EXIT_FAILURE

    def __init__(self, title: str, fix: str = "") -> None:
        super().__init__(title)
        self.title = title
        self.fix = fix

    def render(self) -> str:
        return f"error: {self.title}" + (f"\n  fix: {self.fix}" if self.fix else "")


class UsageProblem(PodtuiError):
    exit_code = EXIT_USAGE


class HostKeyNotVerified(PodtuiError):
    """The server's host key is unknown, unverified or different from the pin."""

    exit_code = EXIT_HOST_KEY


class CannotConnect(PodtuiError):
    """TCP connect, SSH handshake or authentication failed."""

    exit_code = EXIT_CONNECT

"""Messages that workers post back to the UI: small dataclasses; bursts are merged.

(Textual's Message initialises itself from `__post_init__`, so plain @dataclass works.)"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class LogLinesPending(Message):
    """New lines wait in a LogView's intake. Only a wake-up: the view drains everything that is
    pending when it handles one, so a queue of these collapses to one (`can_replace`)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LogLinesPending)


@dataclass
class LogSourceEnded(Message):
    """The follower returned: the source is exhausted (a file was closed, a stream ended)."""

    reason: str = "source ended"


@dataclass
class SwapProgress(Message):
    """One progress event of a swap: phase is download | fit | load; fraction in [0, 1] or None."""

    phase: str
    fraction: float | None
    detail: str = ""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SwapProgress) and message.phase == self.phase


@dataclass
class EndpointProgress(Message):
    """A wake's progress line for one endpoint (its id); a newer line replaces an unread one."""

    key: str
    detail: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EndpointProgress) and message.key == self.key


@dataclass
class ChatTokens(Message):
    """Text an endpoint streamed to the test dialog, in the order it arrived."""

    text: str

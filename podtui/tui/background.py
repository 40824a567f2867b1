"""Run a blocking call on a daemon thread and await its result from the event loop.

Why not Textual's `thread=True` workers: they run on asyncio's default executor, whose threads
are joined when the app exits — one SSH call stalled on a dead network would keep `q` from
quitting. A daemon thread per call is abandoned at exit instead, so nothing blocking can hold the
UI or its shutdown. The awaiting worker still owns the call: its success or failure arrives as
`Worker.StateChanged`, handled in one place by the app.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def in_daemon_thread(call: Callable[[], T], *, name: str = "podtui-call") -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():          # the awaiting worker was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = call()
        except BaseException as exc:  # noqa: BLE001 — handed to the awaiting worker as is
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, None, exc)
            return
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(settle, result, None)
            except RuntimeError:   # loop closed between the check and the call: app has exited
                pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future

"""`podtui endpoints logs`: serverless workers' logs over Server-Sent Events (REST v2
`GET /v2/serverless/{id}/workers/{workerId}/logs`, SERVERLESS.md §4.2), resumed with
`Last-Event-ID` when a connection drops, so no line is lost or shown twice.

Runpod lists only active workers and a worker's log lives with it: following an endpoint means
following each worker that comes up (a thread each), picked up by re-reading the workers view.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from podtui.errors import PodtuiError
from podtui.providers.base import LogLine
from podtui.providers.runpod_api import RunpodUnavailable
from podtui.providers.runpod_endpoints import EndpointNotFound, RunpodEndpoints


def _resumable(client: RunpodEndpoints, endpoint_id: str, worker_id: str, *, tail: int, source: str | None,
               follow: bool, note: Callable[[str], None], max_drops: int, backoff_s: float,
               stop: threading.Event) -> Iterator[LogLine]:
    """One worker's log; a dropped connection (or, when following, an ended one) is reopened with
    Last-Event-ID so no line is lost or repeated. Gives up after max_drops drops in a row
    (RunpodUnavailable). EndpointNotFound when the worker is unknown on the first try; later, a
    worker that is gone ends its log with a note."""
    last: str | None = None
    drops = 0
    first = True
    while not stop.is_set():
        got = False
        dropped: RunpodUnavailable | None = None
        try:
            for line in client.worker_log(endpoint_id, worker_id, tail=tail if last is None else None,
                                          source=source, last_event_id=last, follow=follow):
                got = True
                last = line.event_id or last
                yield line
        except RunpodUnavailable as exc:
            dropped = exc
        except EndpointNotFound:
            if first:
                raise   # no such worker (Runpod lists only active ones)
            note(f"worker {worker_id} is gone")
            return
        if dropped is None and not follow:
            return      # the backfill is over
        first = False
        drops = 0 if got else drops + 1
        if drops > max_drops:
            if dropped is not None:
                raise dropped
            note(f"worker {worker_id}'s log keeps ending; stopped following it")
            return
        if dropped is not None:
            note(f"worker {worker_id}'s log stream dropped ({dropped.title}); resuming after {last or 'the start'}")
        stop.wait(backoff_s * min(drops, 5))


def log_lines(client: RunpodEndpoints, endpoint_id: str, worker: str | None = None, *, follow: bool = False,
              tail: int = 100, source: str | None = None, note: Callable[[str], None] = lambda _: None,
              rescan_s: float = 15.0, max_drops: int = 5, backoff_s: float = 1.0) -> Iterator[tuple[str, LogLine]]:
    """(worker id, line) from `worker`, else from every active worker: one after another, or, with
    follow, all at once (a thread each) while new workers are picked up every rescan_s seconds.
    Raises EndpointNotFound, RunpodUnavailable after max_drops drops in a row."""
    stop = threading.Event()
    kwargs = {"tail": tail, "source": source, "follow": follow, "note": note, "max_drops": max_drops,
              "backoff_s": backoff_s, "stop": stop}

    def worker_ids() -> list[str]:
        if worker:
            return [worker]
        ids = [w.id for w in client.workers(endpoint_id).workers]
        if not ids:
            note(f"endpoint {endpoint_id} has no active worker now (logs exist only while one runs)")
        return ids

    if not follow:
        for wid in worker_ids():
            yield from ((wid, line) for line in _resumable(client, endpoint_id, wid, **kwargs))
        return
    inbox: queue.SimpleQueue = queue.SimpleQueue()

    def pump(wid: str) -> None:
        try:
            for line in _resumable(client, endpoint_id, wid, **kwargs):
                inbox.put((wid, line))
        except PodtuiError as exc:
            note(f"stopped following worker {wid}: {exc.title}")

    followed: set[str] = set()
    ids = worker_ids()   # the first look may fail loudly; later ones only note why
    try:
        while True:
            for wid in ids:
                if wid not in followed:
                    followed.add(wid)
                    threading.Thread(target=pump, args=(wid,), daemon=True, name=f"log {wid}").start()
            deadline = time.monotonic() + rescan_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    yield inbox.get(timeout=left)
                except queue.Empty:
                    break
            try:
                ids = worker_ids()
            except PodtuiError as exc:
                note(f"cannot look for new workers: {exc.title}")
    finally:
        stop.set()

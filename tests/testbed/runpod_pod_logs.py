"""The pod-log part of the REST v2 double (tests/testbed/runpod_double.py): `GET /v2/pods/{id}/logs`
as Server-Sent Events (backfill by `tail` or after `Last-Event-ID`, then live lines) and the
test's way to add lines. A mixin: RunpodDouble holds `logs`, `_lock`, `_seq`, `_stopping` and
`_problem`."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone


def now() -> str:
    """The current UTC time as the spec writes timestamps (seconds, Z)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodLogRoutes:
    def append_log(self, pod_id: str, text: str, source: str = "container") -> None:
        with self._lock:
            entries = self.logs.setdefault(pod_id, [])
            for line in text.splitlines():
                ts = now()
                entries.append({"id": f"{ts}/{next(self._seq):012d}",
                                "data": {"ts": ts, "source": source, "line": line}})


    def _stream_logs(self, handler, pod_id: str, query: dict) -> None:
        """SSE: the backfill (`tail`, default 100, or after Last-Event-ID), then live lines."""
        try:
            tail = int(query.get("tail", ["100"])[0])
        except ValueError:
            return self._problem(handler, 400, "Bad Request", "tail must be an integer")
        if not 0 <= tail <= 5000:
            return self._problem(handler, 400, "Bad Request", "tail must be between 0 and 5000")
        source = query.get("source", [None])[0]
        if source not in (None, "container", "system"):
            return self._problem(handler, 400, "Bad Request", "source must be container or system")
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("X-Accel-Buffering", "no")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        with self._lock:
            entries = list(self.logs.get(pod_id, []))
        last_id = handler.headers.get("Last-Event-ID")
        if last_id:
            start = next((i + 1 for i, e in enumerate(entries) if e["id"] == last_id), 0)
        else:
            start = max(0, len(entries) - tail)
        sent = start
        while not self._stopping.is_set():
            with self._lock:
                entries = list(self.logs.get(pod_id, []))
            for entry in entries[sent:]:
                if source is None or entry["data"]["source"] == source:
                    handler.wfile.write(f"id: {entry['id']}\ndata: {json.dumps(entry['data'])}\n\n".encode())
            handler.wfile.flush()
            sent = len(entries)
            time.sleep(0.05)

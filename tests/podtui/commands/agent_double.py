"""A DOUBLE of `remote-agent rpc` for testing podtui's agent client before the daemon exists.

It speaks the JSON-lines protocol of remote_agent/protocol.py on stdin/stdout (as the real bridge
relays it from the daemon): hello, status, models.list, engine.swap (progress/state events, then
the new status), logs.tail (n lines, or follow until cancel), and protocol errors for anything
else. Run over the real sshd as the exec channel's command. It is not the daemon.
"""

from __future__ import annotations

import sys
import threading
import time

from remote_agent import protocol

out_lock = threading.Lock()
cancelled: set = set()
STATUS = {"state": "ready", "engine": "llama-server", "model": "tiny-a.gguf", "ctx": 2048, "port": 5002,
          "pid": 4242, "uptime_s": 1.5, "last_error": None, "models_dir": "/models",
          "disk_free_bytes": 10**10, "version": "double", "gpus": None}


def send(message: dict) -> None:
    with out_lock:
        sys.stdout.buffer.write(protocol.encode(message))
        sys.stdout.buffer.flush()


def follow_logs(request_id, n: int) -> None:
    i = 0
    while request_id not in cancelled:
        send(protocol.event(request_id, "log", {"source": "engine", "line": f"line {i}", "ts": time.time()}))
        i += 1
        time.sleep(0.02)
    send(protocol.error(request_id, protocol.CANCELLED, "follow cancelled"))


def handle(request: protocol.Request) -> None:
    rid, params = request.id, request.params
    if request.method == "cancel":
        cancelled.add(params.get("id"))
    elif request.method == "status":
        send(protocol.result(rid, STATUS))
    elif request.method == "models.list":
        send(protocol.result(rid, [{"name": "tiny-a.gguf", "path": "/models/tiny-a.gguf", "size_bytes": 17 << 20,
                                    "quant": "F32", "trained_ctx": 4096, "last_used": None}]))
    elif request.method == "engine.swap":
        if params.get("model") == "broken.gguf":
            send(protocol.error(rid, "bad_model", "broken.gguf is not a GGUF; rolled back to tiny-a.gguf, which keeps serving"))
            return
        for phase in ("download", "load"):
            send(protocol.event(rid, "progress", {"phase": phase}))
        send(protocol.event(rid, "state", {"state": "ready"}))
        send(protocol.result(rid, {**STATUS, "model": params["model"], "ctx": params.get("ctx", 2048)}))
    elif request.method == "logs.tail":
        n = int(params.get("n", 100))
        if params.get("follow"):
            threading.Thread(target=follow_logs, args=(rid, n), daemon=True).start()
            return
        for i in range(n):
            send(protocol.event(rid, "log", {"source": "agent", "line": f"old line {i}", "ts": 0}))
        send(protocol.result(rid, {"lines": n}))
    else:
        send(protocol.error(rid, protocol.UNKNOWN_METHOD, f"unknown method {request.method!r}"))


def main() -> None:
    send(protocol.hello("double"))
    for line in sys.stdin.buffer:
        try:
            handle(protocol.parse_request(line))
        except protocol.ProtocolError as exc:
            send(protocol.error(exc.request_id, exc.code, exc.message))


if __name__ == "__main__":
    main()

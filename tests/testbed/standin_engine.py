"""A stand-in engine process (NOT a real engine): a tiny HTTP server that answers the endpoints the
agent's adapters probe, for cases the real llama-server cannot play on this machine — koboldcpp
(no binary can be installed here), an engine that crashes on every start, and one that floods its
log. It is a real process that really listens, prints and exits.

STANDIN_MODE: serve (default) | crash (print a line, exit 3) | chatty (print STANDIN_LINES lines, then serve)
STANDIN_ARGV_FILE: where to write the argv it was started with (JSON).
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    argv = sys.argv[1:]
    if os.environ.get("STANDIN_ARGV_FILE"):
        with open(os.environ["STANDIN_ARGV_FILE"], "w") as f:
            json.dump(argv, f)
    mode = os.environ.get("STANDIN_MODE", "serve")
    if mode == "crash":
        print("stand-in engine: crashing on purpose", flush=True)
        sys.exit(3)
    if mode == "chatty":
        for i in range(int(os.environ.get("STANDIN_LINES", "20000"))):
            sys.stdout.write(f"stand-in engine log line {i:06d} " + "x" * 80 + "\n")
        sys.stdout.flush()
    port = int(argv[argv.index("--port") + 1])
    model = argv[argv.index("--model") + 1]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            bodies = {
                "/health": {"status": "ok"},
                "/slots": [{"id": 0, "is_processing": False}],
                "/api/v1/model": {"result": f"koboldcpp/{os.path.basename(model)}"},
                "/api/extra/perf": {"idle": 1, "queue": 0},
            }
            if self.path not in bodies:
                self.send_error(404)
                return
            body = json.dumps(bodies[self.path]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    print(f"stand-in engine listening on 127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()

"""A stand-in engine process (NOT a real engine): a tiny HTTP server that answers the endpoints the
agent's adapters probe, for cases the real llama-server cannot play on this machine — koboldcpp
(no binary can be installed here), an engine that crashes on every start, and one that floods its
log. It is a real process that really listens, prints and exits.

STANDIN_MODE: serve (default) | crash (print a line, exit 3) | chatty (print STANDIN_LINES lines, then serve)
STANDIN_ARGV_FILE: where to write the argv it was started with (JSON).
STANDIN_SEEN_FILE: where to append, per request, the path and the Authorization header it got.

The API key is checked as the real engines check it: `--password KEY` as koboldcpp does (its
/api/v1/model and /api/extra/perf stay open, the model's name hidden without the key), else
LLAMA_API_KEY as llama-server does (everything but /health answers 401 without the key). Like
koboldcpp it prints its arguments at start, --password included.
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
    password = next((a.split("=", 1)[1] for a in argv if a.startswith("--password=")),
                    argv[argv.index("--password") + 1] if "--password" in argv else None)
    llama_key = os.environ.get("LLAMA_API_KEY")
    print(f"Namespace(argv={argv!r})", flush=True)  # koboldcpp's print(args)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            header = self.headers.get("Authorization")
            if os.environ.get("STANDIN_SEEN_FILE"):
                with open(os.environ["STANDIN_SEEN_FILE"], "a") as f:
                    f.write(json.dumps([self.path, header]) + "\n")
            key = password or llama_key
            authorized = key is None or header == f"Bearer {key}"
            name = f"koboldcpp/{os.path.basename(model)}" if authorized or not password else "koboldcpp/protected-model"
            bodies = {
                "/health": {"status": "ok"},
                "/slots": [{"id": 0, "is_processing": False}],
                "/api/v1/model": {"result": name},
                "/api/extra/perf": {"idle": 1, "queue": 0},
            }
            if self.path not in bodies:
                self.send_error(404)
                return
            if not authorized and llama_key and not password and self.path != "/health":
                self.send_error(401)
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

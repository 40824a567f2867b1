"""A loopback DOUBLE of the Hugging Face hub endpoints that huggingface_hub's download code uses.

This is not Hugging Face: it is a small HTTP server that follows the hub's published contract
closely enough for the real `huggingface_hub` client (pointed at it with `HF_ENDPOINT`) to run its
real download code against it:

- `HEAD|GET /{org}/{repo}/resolve/{revision}/{path}`: an LFS file answers 302 to a CDN URL with
  `X-Linked-Etag: "<sha256>"`, `X-Linked-Size`, `X-Repo-Commit` and the git `ETag`, as the hub does;
  a small non-LFS file answers 200 with `ETag: "<git blob sha1>"`, `Content-Length`, `X-Repo-Commit`.
- `GET /cdn/{sha256}` on a second port (the CDN is another origin, as on the real hub, so the
  client does not follow the 302 during its metadata HEAD and keeps the X-Linked-* headers): the bytes, with `Range: bytes=N-[M]` → 206 + `Content-Range`.
- `GET /api/models/{org}/{repo}/tree/{revision}[/{path}]?recursive=&expand=`: the tree listing
  (`type`, `oid`, `size`, `path`, `lfs: {oid: sha256, size, pointerSize}`).
- `GET /api/models/{org}/{repo}[/revision/{revision}]`: model info with `siblings`.
- Errors carry the hub's `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`,
  `GatedRepo`): an unknown repo is 401 as on the real hub; a gated repo is 401 without a token and
  403 with a token that was not granted access.

Faults for tests (they apply to a blob, i.e. to every path serving the same bytes): cut the
connection after N body bytes (`cut_after`), answer the next body requests with an HTTP status
(`fail_next`), serve a wrong body whose headers still advertise the real sha256 (`corrupt`), and
throttle bodies (`throttle_bps`). Every request is recorded in
`requests` (method, path, Range, whether an Authorization header came — never its value).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_MIN_SIZE = 10 * 1024  # the hub stores big files in LFS; small text files stay in git


@dataclass
class HubFile:
    content: bytes

    def __post_init__(self):
        self.sha256 = hashlib.sha256(self.content).hexdigest()
        # git blob id, as the hub reports `oid` for files
        self.git_oid = hashlib.sha1(b"blob %d\x00" % len(self.content) + self.content).hexdigest()

    @property
    def lfs(self) -> bool:
        return len(self.content) >= LFS_MIN_SIZE


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    gated: bool = False
    commit: str = field(default_factory=lambda: secrets.token_hex(20))


@dataclass
class RecordedRequest:
    method: str
    path: str
    range: str | None
    authorized: bool
    status: int = 0
    body_bytes: int = 0


class HubDouble:
    def __init__(self, *, granted_tokens: set[str] | None = None):
        self.repos: dict[str, HubRepo] = {}
        self.granted_tokens = set(granted_tokens or ())
        self.requests: list[RecordedRequest] = []
        self.throttle_bps: int | None = None
        self._faults: dict[str, list[tuple[str, int]]] = {}  # sha256 -> ordered ("cut"|"status", n)
        self._corrupt: set[str] = set()
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    # ---- content -------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, bytes | Path], *, gated: bool = False) -> HubRepo:
        loaded = {p: _load(c) for p, c in files.items()}
        repo = HubRepo(repo_id, loaded, gated=gated)
        self.repos[repo_id] = repo
        return repo

    def file(self, repo_id: str, path: str) -> HubFile:
        return self.repos[repo_id].files[path]

    # ---- faults --------------------------------------------------------------------------------
    # Faults queue up per file and are used in order, one per body request (GET of the bytes).
    def cut_after(self, repo_id: str, path: str, *byte_counts: int) -> None:
        """The next downloads of the file drop the TCP connection after that many body bytes."""
        self._faults.setdefault(self.file(repo_id, path).sha256, []).extend(("cut", n) for n in byte_counts)

    def fail_next(self, repo_id: str, path: str, status: int, times: int = 1) -> None:
        """The next `times` body downloads of the file answer `status` instead."""
        self._faults.setdefault(self.file(repo_id, path).sha256, []).extend([("status", status)] * times)

    def corrupt(self, repo_id: str, path: str) -> None:
        """Serve a body of the right length but wrong bytes; headers keep the real sha256."""
        self._corrupt.add(self.file(repo_id, path).sha256)

    # ---- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The hub endpoint (what HF_ENDPOINT is set to)."""
        host, port = self._servers[0].server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_url(self) -> str:
        host, port = self._servers[1].server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubDouble":
        double = self

        class Handler(_Handler):
            hub = double

        for name in ("hf-double", "hf-double-cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                             daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> "HubDouble":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- used by the handler -------------------------------------------------------------------
    def _next_fault(self, sha: str) -> tuple[str, int] | None:
        with self._lock:
            queue = self._faults.get(sha)
            return queue.pop(0) if queue else None

    def _blob(self, sha: str) -> HubFile | None:
        for repo in self.repos.values():
            for f in repo.files.values():
                if f.sha256 == sha:
                    return f
        return None


class _Handler(BaseHTTPRequestHandler):
    hub: HubDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # ---- routing -------------------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        url = urlsplit(self.path)
        record = RecordedRequest(self.command, url.path, self.headers.get("Range"),
                                 self.headers.get("Authorization") is not None)
        self.hub.requests.append(record)
        self._record = record
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        try:
            if parts[0] == "cdn" and len(parts) == 2:
                return self._serve_blob(parts[1], head)
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                return self._api(parts[2:], parse_qs(url.query))
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
            self._error(404, None, "Not Found")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _authorize(self, repo_id: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated:
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
            if token is None:
                self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to "
                                              "it and be authenticated to access it. Please log in.")
                return None
            if token not in self.hub.granted_tokens:
                self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the "
                                              "authorized list. Visit the model page to ask for access.")
                return None
        return repo

    def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self._authorize(repo_id)
        if repo is None:
            return
        if revision not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        f = repo.files.get(path)
        if f is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on \"{revision}\"")
        common = {"X-Repo-Commit": repo.commit, "ETag": f'"{f.git_oid}"', "Accept-Ranges": "bytes"}
        if f.lfs:
            location = f"{self.hub.cdn_url}/cdn/{f.sha256}?repo={quote(repo_id)}&file={quote(path)}"
            headers = {**common, "Location": location, "X-Linked-Etag": f'"{f.sha256}"',
                       "X-Linked-Size": str(len(f.content)), "Content-Length": "0"}
            self._send(302, headers, b"")
            return
        self._send_body(f, {**common}, head)

    def _serve_blob(self, sha: str, head: bool) -> None:
        f = self.hub._blob(sha)
        if f is None:
            return self._error(404, None, "No such blob")
        self._send_body(f, {"ETag": f'"{f.sha256}"', "Accept-Ranges": "bytes"}, head)

    def _send_body(self, f: HubFile, headers: dict, head: bool) -> None:
        fault = None if head else self.hub._next_fault(f.sha256)
        if fault and fault[0] == "status":
            return self._error(fault[1], None, "Service Unavailable (double: injected failure)")
        cut = fault[1] if fault and fault[0] == "cut" else None
        content = f.content
        if f.sha256 in self.hub._corrupt:
            content = bytes(b ^ 0x5A for b in content[:4096]) + content[4096:]
        start, end, status = 0, len(content) - 1, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            start = int(first) if first else 0
            end = min(int(last), len(content) - 1) if last else len(content) - 1
            if start >= len(content):
                return self._send(416, {"Content-Range": f"bytes */{len(content)}", "Content-Length": "0"}, b"")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        body = content[start:end + 1]
        headers["Content-Length"] = str(len(body))
        headers["Content-Type"] = "application/octet-stream"
        if head:
            return self._send(status, headers, b"")
        self._record.status = status
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        sent = body if cut is None else body[:cut]
        self._record.body_bytes = len(sent)
        self._write_body(sent)
        if cut is not None and cut < len(body):
            # A dropped connection: headers promised more than we send, then the socket goes away.
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _write_body(self, body: bytes) -> None:
        bps = self.hub.throttle_bps
        chunk = 64 * 1024
        for i in range(0, len(body), chunk):
            self.wfile.write(body[i:i + chunk])
            if bps:
                time.sleep(chunk / bps)

    # ---- API -------------------------------------------------------------------------------------
    def _api(self, parts: list[str], query: dict) -> None:
        repo_id = f"{parts[0]}/{parts[1]}"
        repo = self._authorize(repo_id)
        if repo is None:
            return
        rest = parts[2:]
        if not rest or rest[0] == "revision":
            siblings = [{"rfilename": p} for p in sorted(repo.files)]
            body = {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                    "gated": "manual" if repo.gated else False, "siblings": siblings, "tags": ["gguf"]}
            return self._json(200, body)
        if rest[0] != "tree" or len(rest) < 2:
            return self._error(404, None, "Not Found")
        revision, inner = rest[1], "/".join(rest[2:]).strip("/")
        if revision not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries = _tree(repo, inner, recursive)
        if entries is None:
            return self._error(404, "EntryNotFound", f"{inner} does not exist on \"{revision}\"")
        self._json(200, entries)

    # ---- plumbing ------------------------------------------------------------------------------
    def _json(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self._send(status, {"Content-Type": "application/json", "Content-Length": str(len(data))}, data)

    def _error(self, status: int, code: str | None, message: str) -> None:
        data = json.dumps({"error": message}).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, headers, data if self.command != "HEAD" else b"")

    def _send(self, status: int, headers: dict, body: bytes) -> None:
        self._record.status = status
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(body)


_LOADED: dict[tuple[str, int, float], HubFile] = {}


def _load(content: bytes | Path) -> HubFile:
    """Files from disk are read and hashed once per process (tests serve the same tiny models often)."""
    if not isinstance(content, Path):
        return HubFile(content)
    st = content.stat()
    key = (str(content), st.st_size, st.st_mtime)
    if key not in _LOADED:
        _LOADED[key] = HubFile(content.read_bytes())
    return _LOADED[key]


def _tree(repo: HubRepo, inner: str, recursive: bool) -> list[dict] | None:
    prefix = f"{inner}/" if inner else ""
    below = {p: f for p, f in repo.files.items() if p.startswith(prefix)}
    if inner and not below:
        return None
    entries: dict[str, dict] = {}
    for path, f in sorted(below.items()):
        rel = path[len(prefix):].split("/")
        depth = len(rel) if recursive else 1
        for i in range(1, min(depth, len(rel) - 1) + 1):  # folders on the way
            folder = prefix + "/".join(rel[:i])
            entries.setdefault(folder, {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                        "size": 0, "path": folder})
        if len(rel) == 1 or recursive:
            entry = {"type": "file", "oid": f.git_oid, "size": len(f.content), "path": path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.content), "pointerSize": 134}
            entries[path] = entry
    return list(entries.values())

"""One hub file onto disk: resumable across failures and restarts, verified, then moved into place.

Why not `hf_hub_download`: in huggingface_hub 2.4 it writes to a uniquely named `.incomplete` file
and deletes it on any failure, so once its own in-call retries (5, with a Range header) are spent
— a longer outage, a cancelled swap, a daemon restart — a 40 GB download starts again from zero.
Here the bytes go to MODEL_DIR/.remote-agent/partial/<repo>/<path>.<sha256>.part, which survives
all of those, and the transfer itself is still huggingface_hub's `http_get` (its Range resume,
its handling of servers that ignore Range, its typed errors). The partial is keyed by the file's
sha256/etag so a file changed upstream never resumes onto stale bytes. Hugging Face does not
verify the sha256 it advertises either; this does, before the file becomes visible.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.parse import urlsplit

from remote_agent.fit import gguf_meta
from remote_agent.models import store
from remote_agent.models.errors import ModelError

SHA256_RE = re.compile(r"[0-9a-f]{64}")
PROGRESS_INTERVAL_S = 0.25


class Cancelled(Exception):
    """Raised from inside the transfer when the caller's cancel event is set."""


@dataclass(frozen=True)
class RemoteFile:
    repo_id: str
    path: str  # inside the repo
    url: str  # where the bytes are (the CDN location for LFS files)
    size: int | None
    etag: str  # sha256 for LFS files, git blob id otherwise

    @property
    def sha256(self) -> str | None:
        return self.etag if SHA256_RE.fullmatch(self.etag or "") else None


def partial_bytes(models_dir: Path, remote: RemoteFile) -> int:
    part = store.partial_path(models_dir, remote.repo_id, remote.path, remote.etag)
    return part.stat().st_size if part.exists() else 0


def download_file(remote: RemoteFile, models_dir: Path, *, endpoint: str, token: str | None,
                  on_progress: Callable[[dict], None] | None, cancel: threading.Event | None) -> Path:
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    final = store.hub_file_path(models_dir, remote.repo_id, remote.path)
    part = store.partial_path(models_dir, remote.repo_id, remote.path, remote.etag)
    part.parent.mkdir(parents=True, exist_ok=True)
    _drop_stale_partials(part)
    headers = build_hf_headers(token=token)
    if _origin(remote.url) != _origin(endpoint):
        # Like huggingface_hub: the token is for the hub, never for the CDN the file redirects to.
        headers.pop("authorization", None)
        headers.pop("Authorization", None)
    with open(part.with_name(part.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second request for the same file waits, then resumes/reuses
        if final.exists() and remote.size is not None and final.stat().st_size == remote.size:
            return final
        with open_partial(part) as out:
            resume = out.tell()
            if remote.size is not None and resume > remote.size:
                out.truncate(0)
                out.seek(0)
                resume = 0
            bar = progress_class(remote.path, on_progress, cancel)
            http_get(remote.url, out, resume_size=resume, headers=headers, expected_size=remote.size,
                     displayed_filename=remote.path.rsplit("/", 1)[-1], tqdm_class=bar)
        _verify(part, remote, on_progress, cancel)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
    part.with_name(part.name + ".lock").unlink(missing_ok=True)
    store.prune_empty_dirs(part.parent, store.agent_dir(models_dir))
    return final


def open_partial(part: Path) -> BinaryIO:
    """The partial file, opened to append. Buffered on purpose: a short write (a full disk or quota
    writes what fits) then raises ENOSPC/EDQUOT instead of being ignored by http_get, and the bytes
    that did fit stay a clean prefix of the file, so the next request resumes after them."""
    return open(part, "ab")


def _verify(part: Path, remote: RemoteFile, on_progress, cancel) -> None:
    size = part.stat().st_size
    if remote.size is not None and size != remote.size:
        part.unlink(missing_ok=True)
        raise ModelError("network", f"{remote.path}: got {size} bytes, the hub announced {remote.size}; the partial "
                                    "file was removed — retry the download.")
    if remote.sha256:
        digest = _sha256(part, remote.path, on_progress, cancel)
        if digest != remote.sha256:
            part.unlink(missing_ok=True)
            raise ModelError("checksum", f"{remote.repo_id}/{remote.path} failed its checksum: the hub says sha256 "
                                         f"{remote.sha256}, the downloaded bytes hash to {digest}. The bad file was "
                                         "removed; retry (if it happens again, a proxy or mirror is corrupting it).")
    if remote.path.lower().endswith(".gguf") and not gguf_meta.has_gguf_magic(part):
        part.unlink(missing_ok=True)
        raise ModelError("not_gguf", f"{remote.repo_id}/{remote.path} is not a GGUF file (no GGUF magic); it was "
                                     "removed. Pick a .gguf file of a GGUF repo.")


def _sha256(path: Path, label: str, on_progress, cancel) -> str:
    h = hashlib.sha256()
    total = path.stat().st_size
    done, last = 0, 0.0
    with open(path, "rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            h.update(chunk)
            done += len(chunk)
            now = time.monotonic()
            if on_progress and (now - last >= PROGRESS_INTERVAL_S or done == total):
                last = now
                on_progress({"phase": "verify", "file": label, "bytes": done, "total": total})
    return h.hexdigest()


def progress_class(label: str, on_progress: Callable[[dict], None] | None, cancel: threading.Event | None):
    """A tqdm-shaped class for huggingface_hub's `tqdm_class=`: turns updates into progress dicts
    (at most every 0.25 s, plus the first and last) and raises Cancelled when `cancel` is set."""

    class ProgressBar:
        def __init__(self, *args, total=None, initial=0, **kwargs):
            self.total = total
            self.n = initial
            self._t0 = time.monotonic()
            self._n0 = initial
            self._last = 0.0
            self._emit(force=True)

        def update(self, n=1):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            self.n += n
            self._emit(force=self.total is not None and self.n >= self.total)

        def _emit(self, force=False):
            now = time.monotonic()
            if on_progress is None or (not force and now - self._last < PROGRESS_INTERVAL_S):
                return
            self._last = now
            elapsed = now - self._t0
            rate = int((self.n - self._n0) / elapsed) if elapsed > 0 else 0
            on_progress({"phase": "download", "file": label, "bytes": self.n, "total": self.total,
                         "rate_bps": max(rate, 0)})

        def close(self):
            pass

        def refresh(self, *a, **k):
            pass

        def set_description(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    return ProgressBar


def _drop_stale_partials(part: Path) -> None:
    """Partials of other versions of the same file (changed upstream) can never be resumed."""
    stem = part.name.rsplit(".", 2)[0]  # "<file>.<tag>.part" -> "<file>"
    for other in part.parent.iterdir():
        if other != part and other.name.endswith(".part") and other.name.rsplit(".", 2)[0] == stem:
            other.unlink(missing_ok=True)


def _origin(url: str) -> tuple[str, str, int | None]:
    u = urlsplit(url)
    return (u.scheme, (u.hostname or "").lower(), u.port)

"""Parse MODEL into what to fetch: every form users already type (seeds 000 and 004).

    https://huggingface.co/org/repo/resolve/main/x.gguf   one file (also …/blob/…, ?download=true)
    https://huggingface.co/org/repo[/tree/main/dir]       a repo or a directory: first .gguf in order
    org/repo                                              the same, for the whole repo
    org/repo:Q4_K_M                                       files whose name carries that quant
    org/repo/path/file.gguf                               one file
    /abs/path.gguf, ./rel.gguf, ~/x.gguf, file:///x.gguf  a local file (or a directory of GGUFs)
    name-from-models.list                                 a file already in MODEL_DIR

Anything that would reach outside the repo or MODEL_DIR (`..`, absolute paths inside a repo ref,
backslashes) is refused here, before any network or disk access.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from remote_agent.models.errors import ModelError

HUB_HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_QUANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
FORMS_HELP = (
    "MODEL may be a Hugging Face URL (…/resolve/main/file.gguf, a repo or …/tree/main/dir), "
    "org/repo, org/repo:QUANT (e.g. org/repo:Q4_K_M), org/repo/path/file.gguf, "
    "or a local path (/path/file.gguf, ./file.gguf)"
)


@dataclass(frozen=True)
class LocalRef:
    path: Path


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    revision: str = "main"
    path: str = ""  # inside the repo: a file when is_file, else a directory ("" = the repo root)
    is_file: bool = False
    quant: str | None = None

    def describe(self) -> str:
        where = f"{self.repo_id}/{self.path}" if self.path else self.repo_id
        return f"{where}:{self.quant}" if self.quant else where


def parse_model_ref(text: str, models_dir: Path | None = None) -> LocalRef | HubRef:
    text = (text or "").strip()
    if not text:
        raise ModelError("bad_ref", f"MODEL is empty. {FORMS_HELP}.")
    if "\x00" in text:
        raise ModelError("bad_ref", "MODEL contains a NUL byte. " + FORMS_HELP + ".")
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        return _parse_url(text)
    if lowered.startswith("file://"):
        return LocalRef(Path(unquote(urlsplit(text).path)))
    if text.startswith(("/", "./", "../", "~")) or text in (".", ".."):
        return LocalRef(Path(os.path.expanduser(text)))
    if models_dir is not None:
        stored = _stored_name(text, models_dir)
        if stored is not None:
            return LocalRef(stored)
    return _parse_repo_ref(text)


def check_repo_path(path: str, what: str = "path") -> str:
    """A path inside a repo, as the hub names it: relative, '/'-separated, no '.', '..' or '\\'."""
    if path.startswith("/"):
        raise ModelError("bad_ref", f"refused {what} {path!r}: absolute paths are not allowed inside a repo; "
                                    "give the path relative to the repo root.")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise ModelError("bad_ref", f"refused {what} {path!r}: it contains control characters (a newline "
                                    "could forge lines in the pod log); no real model file is named so.")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in path or "\x00" in path:
        raise ModelError("bad_ref", f"refused {what} {path!r}: path traversal ('..', '.', empty segments or "
                                    "backslashes) is not allowed; give the plain path inside the repo.")
    return path


def _stored_name(text: str, models_dir: Path) -> Path | None:
    """A name as `models.list` prints it (relative to MODEL_DIR), if such a file exists there."""
    if "\\" in text or any(p in ("..",) for p in text.split("/")):
        raise ModelError("bad_ref", f"refused MODEL {text!r}: '..' would reach outside MODEL_DIR; "
                                    "give an absolute path for files elsewhere.")
    candidate = models_dir / text
    return candidate if candidate.is_file() else None


def _parse_repo_ref(text: str) -> HubRef:
    quant = None
    if ":" in text:
        text, quant = text.rsplit(":", 1)
        if not _QUANT.fullmatch(quant):
            raise ModelError("bad_ref", f"bad quant {quant!r} in MODEL; write it like org/repo:Q4_K_M.")
    if any(ch.isspace() for ch in text):
        raise ModelError("bad_ref", f"MODEL {text!r} contains a space; Hugging Face names have none. "
                                    f"{FORMS_HELP}.")
    parts = text.split("/")
    if len(parts) < 2:
        raise ModelError("bad_ref", f"MODEL {text!r} is not a file in MODEL_DIR nor a Hugging Face repo. "
                                    f"{FORMS_HELP}.")
    repo_id = _repo_id(parts[0], parts[1], text)
    rest = "/".join(parts[2:])
    if not rest:
        return HubRef(repo_id, quant=quant)
    if quant:
        raise ModelError("bad_ref", f"MODEL {text}:{quant}: a quant filter applies to a whole repo "
                                    "(org/repo:QUANT), not to a path inside it.")
    check_repo_path(rest)
    return HubRef(repo_id, path=rest, is_file=_looks_like_file(rest))


def _parse_url(text: str) -> HubRef:
    url = urlsplit(text)
    host = (url.hostname or "").lower()
    if host not in HUB_HOSTS and host != _endpoint_host():
        raise ModelError("bad_ref", f"MODEL URL host {host!r} is not Hugging Face; only huggingface.co URLs "
                                    f"(or HF_ENDPOINT's host) can be downloaded. {FORMS_HELP}.")
    raw = url.path.strip("/")
    segments = [unquote(s) for s in raw.split("/")] if raw else []
    if segments and segments[0] in ("models",):  # huggingface.co/models/org/repo is an old alias
        segments = segments[1:]
    if len(segments) < 2:
        raise ModelError("bad_ref", f"MODEL URL {text!r} names no repo; expected "
                                    "https://huggingface.co/ORG/REPO[/resolve/main/FILE.gguf].")
    if segments[0] in ("datasets", "spaces"):
        raise ModelError("bad_ref", f"MODEL URL {text!r} points to a {segments[0][:-1]}, not a model repo.")
    repo_id = _repo_id(segments[0], segments[1], text)
    rest = segments[2:]
    if not rest:
        return HubRef(repo_id)
    kind = rest[0]
    if kind not in ("resolve", "blob", "tree") or len(rest) < 2:
        raise ModelError("bad_ref", f"MODEL URL {text!r}: expected …/resolve/REV/FILE, …/blob/REV/FILE or "
                                    "…/tree/REV[/DIR] after the repo.")
    revision = rest[1]
    if not _NAME.fullmatch(revision):
        raise ModelError("bad_ref", f"MODEL URL {text!r}: bad revision {revision!r}.")
    inner = "/".join(rest[2:])
    if kind == "tree":
        if inner:
            check_repo_path(inner)
        return HubRef(repo_id, revision=revision, path=inner)
    if not inner:
        raise ModelError("bad_ref", f"MODEL URL {text!r} names no file after /{kind}/{revision}/.")
    check_repo_path(inner)
    return HubRef(repo_id, revision=revision, path=inner, is_file=True)


def _repo_id(org: str, name: str, text: str) -> str:
    for part in (org, name):
        if not _NAME.fullmatch(part) or part.startswith("..") or ".." in part:
            raise ModelError("bad_ref", f"MODEL {text!r}: {part!r} is not a valid Hugging Face org or repo "
                                        f"name (letters, digits, '.', '_', '-'). {FORMS_HELP}.")
    return f"{org}/{name}"


def _looks_like_file(path: str) -> bool:
    """`org/repo/sub/x.gguf` names a file; `org/repo/Q4_K_M` (no extension) a directory."""
    last = path.rsplit("/", 1)[-1]
    return "." in last and not last.startswith(".")


def _endpoint_host() -> str | None:
    endpoint = os.environ.get("HF_ENDPOINT")
    return (urlsplit(endpoint).hostname or "").lower() if endpoint else None

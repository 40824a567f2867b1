"""Parse MODEL into what to fetch: every form users already type (seeds 000 and 004), and the forms
other tools and the hub's own pages hand out (issue 16).

    https://huggingface.co/org/repo/resolve/main/x.gguf   one file (also …/blob/…, …/raw/…, ?download=true)
    https://huggingface.co/org/repo[/tree/main/dir]       a repo or a directory: first .gguf in order
    huggingface.co/…, hf.co/…                             the same without https:// (as pasted from a page)
    hf.co/org/repo:Q4_K_M                                 Ollama's and Docker's form: org/repo:Q4_K_M
    hf://org/repo[@rev][/path]                            huggingface_hub's file-system URI
    org/repo                                              the same, for the whole repo
    org/repo:Q4_K_M                                       files whose name carries that quant
    org/repo/path/file.gguf                               one file
    /abs/path.gguf, ./rel.gguf, ~/x.gguf, file:///x.gguf  a local file (or a directory of GGUFs)
    name-from-models.list                                 a file already in MODEL_DIR

A hub host name is never read as an org. What cannot be honoured (a pasted command line such as
`ollama run hf.co/…`, another app's link such as `lmstudio://…`, a dataset or Space) is refused
with the part to keep. Anything that would reach outside the repo or MODEL_DIR (`..`, absolute
paths inside a repo ref, backslashes) is refused here, before any network or disk access.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from remote_agent.models.errors import ModelError

HUB_HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
HF_URI_SCHEMES = ("hf://", "huggingface://")  # huggingface_hub's HfFileSystem; LocalAI's gallery form
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_QUANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# The hub's web routes that name a file or folder at a revision (as huggingface_hub's URI parser).
_LOCATION_ROUTES = ("resolve", "blob", "raw", "blame", "tree")
# Repo types other than models, as prefixes of hub URLs and hf:// URIs.
_OTHER_KINDS = {"datasets": "dataset", "spaces": "Space", "kernels": "kernel", "buckets": "bucket"}
FORMS_HELP = (
    "MODEL may be a Hugging Face URL (…/resolve/main/file.gguf, a repo or …/tree/main/dir; "
    "https:// may be left out), org/repo, org/repo:QUANT (e.g. org/repo:Q4_K_M or "
    "hf.co/org/repo:Q4_K_M), org/repo/path/file.gguf, hf://org/repo[/file.gguf], "
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
    if lowered.startswith(HF_URI_SCHEMES):
        return _parse_hf_uri(text)
    if lowered.startswith("file://"):
        return LocalRef(Path(unquote(urlsplit(text).path)))
    if text.startswith(("/", "./", "../", "~")) or text in (".", ".."):
        return LocalRef(Path(os.path.expanduser(text)))
    if _SCHEME.match(text):
        raise _foreign_link(text)
    if _is_hub_host(_host_of(text.split("/", 1)[0])):  # huggingface.co/org/repo pasted without https://
        return _parse_url("https://" + text, shown=text)
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


def _parse_repo_ref(text: str, revision: str = "main", shown: str | None = None) -> HubRef:
    """org/repo, org/repo:QUANT or org/repo/path; `shown` is what the user wrote, for messages."""
    shown = shown or text
    if any(ch.isspace() for ch in text):
        command = _command_line_hint(text)
        if command:
            raise command
    quant = None
    if ":" in text:
        text, quant = text.rsplit(":", 1)
        if not _QUANT.fullmatch(quant):
            raise ModelError("bad_ref", f"bad quant {quant!r} in MODEL {shown!r}; write it like org/repo:Q4_K_M.")
    if any(ch.isspace() for ch in text):
        raise ModelError("bad_ref", f"MODEL {text!r} contains a space; Hugging Face names have none. "
                                    f"{FORMS_HELP}.")
    parts = text.split("/")
    if len(parts) < 2:
        raise ModelError("bad_ref", f"MODEL {text!r} is not a file in MODEL_DIR nor a Hugging Face repo. "
                                    f"{FORMS_HELP}.")
    repo_id = _repo_id(parts[0], parts[1], shown)
    rest = "/".join(parts[2:])
    if not rest:
        return HubRef(repo_id, revision=revision, quant=quant)
    if quant:
        raise ModelError("bad_ref", f"MODEL {shown}: a quant filter applies to a whole repo "
                                    "(org/repo:QUANT), not to a path inside it.")
    check_repo_path(rest)
    return HubRef(repo_id, revision=revision, path=rest, is_file=_looks_like_file(rest))


def _parse_url(url_text: str, shown: str | None = None) -> HubRef:
    """A hub web URL; `shown` is what the user wrote (without https:// when they left it out)."""
    text = shown or url_text
    url = urlsplit(url_text)
    host = (url.hostname or "").lower()
    if not _is_hub_host(host):
        raise ModelError("bad_ref", f"MODEL URL host {host!r} is not Hugging Face; only huggingface.co URLs "
                                    f"(or HF_ENDPOINT's host) can be downloaded. {FORMS_HELP}.")
    raw = url.path.strip("/")
    segments = [unquote(s) for s in raw.split("/")] if raw else []
    if segments and segments[0] == "models":  # huggingface.co/models/org/repo is an old alias
        segments = segments[1:]
    if segments and segments[0] in _OTHER_KINDS:
        raise _not_a_model(text, segments[0])
    if len(segments) < 2:
        raise ModelError("bad_ref", f"MODEL URL {text!r} names no repo; expected "
                                    "https://huggingface.co/ORG/REPO[/resolve/main/FILE.gguf].")
    rest = segments[2:]
    if not rest and ":" in segments[1]:  # hf.co/org/repo:Q4_K_M, Ollama's and Docker's form
        return _parse_repo_ref("/".join(segments), shown=text)
    repo_id = _repo_id(segments[0], segments[1], text)
    if not rest:
        return HubRef(repo_id)
    kind = rest[0]
    if kind not in _LOCATION_ROUTES or len(rest) < 2:
        raise ModelError("bad_ref", f"MODEL URL {text!r}: expected …/resolve/REV/FILE, …/blob/REV/FILE or "
                                    "…/tree/REV[/DIR] after the repo.")
    revision = _revision(rest[1], text)
    inner = "/".join(rest[2:])
    if kind == "tree":
        if inner:
            check_repo_path(inner)
        return HubRef(repo_id, revision=revision, path=inner)
    if not inner:
        raise ModelError("bad_ref", f"MODEL URL {text!r} names no file after /{kind}/{revision}/.")
    check_repo_path(inner)
    return HubRef(repo_id, revision=revision, path=inner, is_file=True)


def _parse_hf_uri(text: str) -> HubRef:
    """hf://[models/]org/repo[@rev][/path][:QUANT], huggingface_hub's URI grammar (its datasets,
    Spaces, kernels and buckets are refused); huggingface://org/repo/file.gguf reads the same."""
    body = text.split("://", 1)[1]
    first = body.split("/", 1)[0]
    if first == "models":
        body = body.split("/", 1)[1] if "/" in body else ""
    elif first in _OTHER_KINDS:
        raise _not_a_model(text, first)
    match = re.fullmatch(r"(?P<repo>[^/@]*/[^/@]*?)(?:@(?P<rev>[^/]*))?(?P<rest>/.*)?", body)
    if not match:
        raise ModelError("bad_ref", f"MODEL {text!r} names no repo; expected hf://ORG/REPO[@REVISION][/FILE.gguf].")
    repo, revision, rest = match["repo"], match["rev"], match["rest"] or ""
    if revision is not None and not rest and ":" in revision:  # hf://org/repo@rev:Q4_K_M
        revision, quant = revision.split(":", 1)
        rest = ":" + quant
    return _parse_repo_ref(repo + rest, revision=_revision(unquote(revision), text) if revision is not None
                           else "main", shown=text)


def _revision(revision: str, text: str) -> str:
    if not _NAME.fullmatch(revision):
        raise ModelError("bad_ref", f"MODEL {text!r}: bad revision {revision!r}; give a branch, tag or commit "
                                    "such as main.")
    return revision


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


def _is_hub_host(host: str | None) -> bool:
    """huggingface.co, www.huggingface.co, hf.co (any case) or HF_ENDPOINT's host."""
    host = (host or "").lower()
    endpoint = os.environ.get("HF_ENDPOINT")
    return host in HUB_HOSTS or bool(endpoint and host == (urlsplit(endpoint).hostname or "").lower())


def _host_of(first_segment: str) -> str | None:
    """The host a scheme-less MODEL starts with (`hf.co` in hf.co/org/repo), if it names one."""
    try:
        return urlsplit("//" + first_segment).hostname
    except ValueError:
        return None


def _not_a_model(text: str, kind: str) -> ModelError:
    return ModelError("bad_ref", f"MODEL {text!r} points to a {_OTHER_KINDS[kind]}, not a model repo; "
                                 "give a model repo (a …-GGUF repo of the model).")


def _foreign_link(text: str) -> ModelError:
    """Another app's link (lmstudio://open_from_hf?model=org/repo, s3://…): name the model inside it
    when there is one."""
    scheme = text.split("://", 1)[0]
    inner = next(iter(parse_qs(urlsplit(text).query).get("model", [])), None)
    keep = f" Drop the prefix and give the model itself: {inner}." if inner else ""
    return ModelError("bad_ref", f"MODEL {text!r} uses the {scheme}:// scheme, which podtui cannot download "
                                 f"from.{keep} {FORMS_HELP}.")


def _command_line_hint(text: str) -> ModelError | None:
    """A pasted command (`ollama run hf.co/org/repo:Q4_K_M`, `llama-server -hf org/repo:Q4_K_M`,
    `huggingface-cli download org/repo file.gguf --local-dir .`): the model ref inside it, to keep."""
    words = text.split()
    for i, word in enumerate(words):
        if "/" not in word or word.startswith("-"):
            continue
        try:
            ref = parse_model_ref(word)
        except ModelError:
            continue
        if not isinstance(ref, HubRef):
            continue
        after = words[i + 1:]
        keep = _repo_then_file(ref, word, after[0]) if after else None
        if keep is None:
            if i == 0 and not (after and after[0].startswith("-")):
                return None  # "org/repo Q4": a typo in one name, not a command line
            keep = word
        return ModelError("bad_ref", f"MODEL {text!r} is a command line, not a model (it contains spaces; "
                                     "Hugging Face names have none): drop the prefix and options around the "
                                     f"model and give only {keep}.")
    return None


def _repo_then_file(ref: HubRef, word: str, next_word: str) -> str | None:
    """`hf download org/repo sub/x.gguf` (the download line of many model cards): org/repo/sub/x.gguf."""
    if ref.path or ref.quant or not next_word.lower().endswith(".gguf"):
        return None
    candidate = f"{word.rstrip('/')}/{next_word}"
    try:
        combined = parse_model_ref(candidate)
    except ModelError:
        return None
    return candidate if isinstance(combined, HubRef) and combined.is_file else None

"""Fetch a hub MODEL into MODEL_DIR: pick the files, check the disk, download, map hub errors.

Everything hub-facing goes through huggingface_hub (listing, HEAD metadata, the byte transfer) at
the endpoint in HF_ENDPOINT, read at call time so a test double or a mirror can be set per process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

from remote_agent.models import disk, select, store
from remote_agent.models.errors import ModelError
from remote_agent.models.local import resolve_local
from remote_agent.models.refs import HubRef, check_repo_path
from remote_agent.models.transfer import Cancelled, RemoteFile, download_file

DEFAULT_ENDPOINT = "https://huggingface.co"
# Leave this much free after a download: a full volume breaks logs, state files and the engine.
DEFAULT_KEEP_FREE_BYTES = 256 * 1024 * 1024
# The hub's own wording for the permission a fine-grained token needs for gated repos.
FINE_GRAINED = ('A fine-grained token also needs "Read access to contents of all public gated repos you can '
                'access" ticked in its permissions.')


def fetch(ref: HubRef, models_dir: Path, *, token: str | None = None,
          on_progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
          keep_free_bytes: int = DEFAULT_KEEP_FREE_BYTES) -> Path:
    if ref.is_file and not select.is_gguf_name(ref.path):
        raise ModelError("not_gguf", f"{ref.repo_id}/{ref.path} is not a .gguf file; llama.cpp and koboldcpp load "
                                     "GGUF only. Pick a .gguf file (or a GGUF repo, e.g. one named …-GGUF).")
    if _offline():
        local = _local_copy(ref, models_dir)
        if local is not None:
            return local
        raise ModelError("offline", f"HF_HUB_OFFLINE is set, so {ref.describe()} cannot be downloaded and it is "
                                    f"not in {models_dir} yet. Unset HF_HUB_OFFLINE, or give a local path / a name "
                                    "from models.list.")
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    # huggingface_hub would read HF_TOKEN itself; reading it here makes the messages say the truth
    # ("the token has no access" vs "needs a token") and lets every message scrub it.
    token = token or os.environ.get("HF_TOKEN") or None
    secret = token
    try:
        try:
            remotes = _plan(ref, endpoint, token)
        except ModelError as e:
            if e.code != "network":
                raise
            local = _local_copy(ref, models_dir)  # hub unreachable but we have it: serve what we have
            if local is not None:
                return local
            raise
        store.ensure_layout(models_dir)
        missing = [r for r in remotes if not _already_there(r, models_dir)]
        disk.check_room(missing, models_dir, keep_free_bytes)
        for i, remote in enumerate(missing):
            try:
                download_file(remote, models_dir, endpoint=endpoint, token=token, on_progress=on_progress,
                              cancel=cancel)
            except OSError as e:
                if not disk.is_no_room(e):
                    raise
                raise disk.filled_up(e, remote, missing[i:], models_dir) from None
        return store.hub_file_path(models_dir, remotes[0].repo_id, remotes[0].path)
    except ModelError as e:
        raise ModelError(e.code, _scrub(str(e), secret)) from None
    except Cancelled:
        raise ModelError("cancelled", f"download of {ref.describe()} cancelled; the bytes so far are kept in "
                                      f"{store.agent_dir(models_dir)}/partial and the next request resumes them.") from None
    except Exception as e:  # hub / network errors, mapped to codes
        raise _map_error(e, ref, endpoint, token, models_dir, secret) from None


def _plan(ref: HubRef, endpoint: str, token: str | None) -> list[RemoteFile]:
    """The files to download (part one first), with their size and etag/sha256 from the hub."""
    try:
        if ref.is_file:
            paths = select.split_siblings(ref.path, [])
        else:
            paths = _pick_from_listing(ref, endpoint, token)
        return [_metadata(ref, p, endpoint, token) for p in paths]
    except ModelError:
        raise
    except Exception as e:
        raise _map_error(e, ref, endpoint, token, None, token) from None


def _pick_from_listing(ref: HubRef, endpoint: str, token: str | None) -> list[str]:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    entries = api.list_repo_tree(ref.repo_id, path_in_repo=ref.path or None, recursive=True,
                                 revision=ref.revision, token=token)
    paths = [e.path for e in entries if hasattr(e, "size") and hasattr(e, "lfs")]  # files, not folders
    for p in paths:  # a hostile or broken hub must not place files outside MODEL_DIR
        check_repo_path(p, what="path from the hub listing")
    chosen = select.pick_model(paths, ref.quant)
    if chosen:
        missing = [p for p in chosen if p not in paths]
        if missing:
            raise ModelError("not_found", f"split model {chosen[0]} in {ref.repo_id} lacks {', '.join(missing)} on "
                                          "the hub; pick another quant or file.")
        return chosen
    # Projectors (mmproj-*-F16.gguf) are never picked, so their quants are not offered either.
    ggufs = [p for p in paths if select.is_gguf_name(p) and not select.is_projector(p)]
    where = f"{ref.repo_id}/{ref.path}" if ref.path else ref.repo_id
    if ref.quant and ggufs:
        quants = sorted({q for q in (store.quant_of(p) for p in ggufs) if q})
        raise ModelError("not_found", f"no .gguf file in {where} matches quant {ref.quant}; it has "
                                      f"{', '.join(quants) or 'no recognisable quant names'}. Use one of those.")
    raise ModelError("not_found", f"{where} has no .gguf file (it has {len(paths)} other files); podtui serves "
                                  "GGUF models — look for a …-GGUF repo of this model.")


def _metadata(ref: HubRef, path: str, endpoint: str, token: str | None) -> RemoteFile:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    url = hf_hub_url(ref.repo_id, path, revision=ref.revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url, token=token, endpoint=endpoint)
    except EntryNotFoundError:
        raise ModelError("not_found", f"{path} does not exist in {ref.repo_id} (revision {ref.revision}); check the "
                                      f"file name on https://huggingface.co/{ref.repo_id}.") from None
    return RemoteFile(ref.repo_id, path, meta.location, meta.size, meta.etag or "")


def _already_there(remote: RemoteFile, models_dir: Path) -> bool:
    final = store.hub_file_path(models_dir, remote.repo_id, remote.path)
    # Files only appear at their final path after verification, so a matching size means done.
    return final.is_file() and remote.size is not None and final.stat().st_size == remote.size


def _local_copy(ref: HubRef, models_dir: Path) -> Path | None:
    """The copy of `ref` already in MODEL_DIR, when it is complete."""
    try:
        if ref.is_file:
            path = store.hub_file_path(models_dir, ref.repo_id, ref.path)
            return resolve_local(path) if path.exists() else None
        base = store.hub_file_path(models_dir, ref.repo_id, ref.path) if ref.path else models_dir / ref.repo_id
        if not base.is_dir():
            return None
        names = [p.relative_to(base).as_posix() for p in base.rglob("*.gguf") if p.is_file()]
        chosen = select.pick_model(names, ref.quant)
        return resolve_local(base / chosen[0]) if chosen else None
    except ModelError:
        return None


def _map_error(e: Exception, ref: HubRef, endpoint: str, token: str | None, models_dir: Path | None,
               secret: str | None) -> ModelError:
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    page = f"https://huggingface.co/{ref.repo_id}"
    kept = (f" Bytes already downloaded are kept in {store.agent_dir(models_dir)}/partial; the next request "
            "resumes them.") if models_dir is not None else ""
    if isinstance(e, ModelError):
        return e
    if disk.is_no_room(e) and models_dir is not None:
        return disk.no_room(e, models_dir)
    if isinstance(e, OfflineModeIsEnabled):
        return ModelError("offline", f"HF_HUB_OFFLINE is set, so {ref.describe()} cannot be downloaded. Unset it or "
                                     "use a model already in MODEL_DIR.")
    if isinstance(e, GatedRepoError):
        if token:
            msg = (f"{ref.repo_id} is gated and the HF_TOKEN given has no access to it: accept the license on the "
                   f"model page {page} with the account that owns the token, then retry. {FINE_GRAINED}")
        else:
            msg = (f"{ref.repo_id} is gated: it needs HF_TOKEN (a read token from huggingface.co/settings/tokens) "
                   f"and its license accepted on the model page {page}. {FINE_GRAINED}")
        return ModelError("needs_token", _scrub(msg, secret))
    if isinstance(e, RevisionNotFoundError):
        return ModelError("not_found", f"revision {ref.revision!r} does not exist in {ref.repo_id}.")
    if isinstance(e, RepositoryNotFoundError):
        hint = "check the spelling" + ("" if token else "; if the repo is private, set HF_TOKEN")
        return ModelError("not_found", f"repo {ref.repo_id} was not found on Hugging Face ({hint}).")
    if isinstance(e, EntryNotFoundError):
        return ModelError("not_found", f"{ref.describe()} does not exist in {ref.repo_id} (revision "
                                       f"{ref.revision}); check the file name on {page}.")
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, HfHubHTTPError) and status in (401, 403):
        return ModelError("needs_token", f"Hugging Face refused access to {ref.repo_id} (HTTP {status}): it needs "
                                         f"HF_TOKEN / accept the license on the model page {page}. {FINE_GRAINED}")
    reason = _scrub(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, secret)
    if status is not None:
        return ModelError("network", f"Hugging Face ({endpoint}) answered HTTP {status} for {ref.describe()}: "
                                     f"{reason}. Retry later.{kept}")
    return ModelError("network", f"could not download {ref.describe()} from {endpoint}: {type(e).__name__}: "
                                 f"{reason}. Check the pod's network and retry.{kept}")


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if value.strip().lower() in {"1", "on", "yes", "true"}:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


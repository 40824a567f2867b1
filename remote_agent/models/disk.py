"""MODEL_DIR's disk: refuse a download that cannot fit, and name a volume that filled up mid-file.

Two errors mean "no room" while writing: ENOSPC (the filesystem is full) and EDQUOT (a quota is
used up; Runpod's network volumes report this while `df` still shows free space). Both become
`disk_full` naming the directory, the volume it is on, the bytes still needed and the bytes free;
the partial file keeps what was written, so the next request resumes it.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from remote_agent.models import store
from remote_agent.models.errors import ModelError
from remote_agent.models.transfer import RemoteFile, partial_bytes

NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
FIX = ("Delete models (models.delete), pick a smaller quant, or give the pod a bigger volume; the next "
       "request resumes the download.")


def is_no_room(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in NO_ROOM_ERRNOS


def still_needed(remotes: list[RemoteFile], models_dir: Path) -> int:
    """Bytes still to download for `remotes`, counting what their partial files already hold."""
    return sum(max((r.size or 0) - partial_bytes(models_dir, r), 0) for r in remotes)


def check_room(missing: list[RemoteFile], models_dir: Path, keep_free_bytes: int) -> None:
    """Before a byte is fetched: the bytes still needed plus `keep_free_bytes` must be free."""
    needed = still_needed(missing, models_dir)
    if not needed:
        return
    free = shutil.disk_usage(models_dir).free
    if needed + keep_free_bytes > free:
        raise ModelError("disk_full", f"not enough disk in {models_dir}{_on_volume(models_dir)}: the download "
                                      f"needs {_gib(needed)} ({needed} bytes) and {_gib(keep_free_bytes)} must "
                                      f"stay free, but only {_gib(free)} ({free} bytes) is free. Delete models "
                                      "(models.delete), pick a smaller quant, or give the pod a bigger volume.")


def filled_up(error: OSError, writing: RemoteFile, remaining: list[RemoteFile], models_dir: Path) -> ModelError:
    """The `disk_full` error for a write that found no room: `writing` is the file being written,
    `remaining` it and every file after it (their bytes are what is still needed)."""
    needed = still_needed(remaining, models_dir)
    kept = partial_bytes(models_dir, writing)
    free = _free(models_dir)
    name = errno.errorcode.get(error.errno or 0, str(error.errno))
    quota = ""
    if error.errno != errno.ENOSPC:
        quota = (" A quota limits this volume below what it reports free (Runpod network volumes do this): "
                 "its size, not df, is the limit.")
    size = f" of {writing.size}" if writing.size is not None else ""
    kept_note = f" The {kept} bytes so far are kept in {store.agent_dir(models_dir)}/partial." if kept else ""
    return ModelError("disk_full", f"{models_dir}{_on_volume(models_dir)} is full: writing "
                                   f"{writing.repo_id}/{writing.path} failed with {os.strerror(error.errno)!r} "
                                   f"({name}) after {kept}{size} bytes. The download still needs {_gib(needed)} "
                                   f"({needed} bytes); {_gib(free)} ({free} bytes) is free.{quota}{kept_note} "
                                   f"{FIX}")


def no_room(error: OSError, models_dir: Path) -> ModelError:
    """`disk_full` for a write outside a file's bytes (MODEL_DIR's own folders, a lock file)."""
    free = _free(models_dir)
    return ModelError("disk_full", f"{models_dir}{_on_volume(models_dir)} is full: {os.strerror(error.errno)} "
                                   f"({errno.errorcode.get(error.errno or 0, error.errno)}); {_gib(free)} ({free} "
                                   f"bytes) is free. {FIX}")


def _on_volume(path: Path) -> str:
    mount = mount_point(path)
    if mount is None:
        return ""
    return " (a volume of its own)" if mount == Path(path).resolve() else f" (on the volume mounted at {mount})"


def mount_point(path: Path) -> Path | None:
    """The mount point holding `path` (the volume a user can resize), or None when unknown."""
    try:
        current = Path(path).resolve()
        while not os.path.ismount(current):
            if current.parent == current:
                return None
            current = current.parent
        return current
    except OSError:
        return None


def _free(models_dir: Path) -> int:
    try:
        return shutil.disk_usage(models_dir).free
    except OSError:
        return 0


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"

"""The clusters podtui remembers: `<config>/clusters.json`, {name: record}, no secrets.

A record is {"name", "server", "backends": [refs], "direct", "reach", "linked_at"} plus, for a Runpod
Instant Cluster, "kind": "instant" and "cluster_id" (the only way `cluster terminate` can delete one:
Runpod refuses its members on the pod endpoints). Several writers may run at once (two CLI commands,
the TUI's stop and terminate), so every change is a read-modify-write under an exclusive lock
(`clusters.json.lock`, fcntl) and lands by rename: a reader sees the old file or the new one, never
half of one, and no writer drops another's record.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from podtui import paths
from podtui.errors import UsageProblem


def clusters_file() -> Path:
    """<config>/clusters.json."""
    return paths.config_dir() / "clusters.json"


def load_clusters() -> dict[str, dict]:
    """The remembered clusters by name ({} when none, or when the file is unreadable)."""
    try:
        data = json.loads(clusters_file().read_text())
    except (OSError, ValueError):
        return {}
    return {name: record for name, record in data.items() if isinstance(record, dict)} if isinstance(data, dict) else {}


@contextmanager
def _locked() -> Iterator[dict[str, dict]]:
    """The clusters, under the lock, written back (by rename) when the block ends without an exception."""
    path = clusters_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        clusters = load_clusters()
        yield clusters
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(clusters, indent=1))
        os.replace(temporary, path)


def update_cluster(name: str, change: Callable[[dict | None], dict | None]) -> dict | None:
    """Replace the record NAME with change(old record or None); None forgets it. Returns the new record.
    Raises OSError when the config dir cannot be written."""
    with _locked() as clusters:
        new = change(clusters.get(name))
        if new is None:
            clusters.pop(name, None)
        else:
            clusters[name] = new
    return new


def save_cluster(record: dict) -> None:
    """Remember record under its name, replacing one of the same name. Raises OSError."""
    update_cluster(record["name"], lambda old: record)


def forget_cluster(name: str) -> bool:
    """Forget the cluster NAME; False when there was none."""
    with _locked() as clusters:
        return clusters.pop(name, None) is not None


def find_cluster(name: str) -> dict:
    """A remembered cluster by name; raises UsageProblem naming the known ones."""
    clusters = load_clusters()
    if name not in clusters:
        known = ", ".join(sorted(clusters)) or "none"
        raise UsageProblem(f"no cluster named {name!r} (known: {known})", "see `podtui cluster list`")
    return clusters[name]

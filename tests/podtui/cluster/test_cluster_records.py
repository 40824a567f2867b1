"""clusters.json under several writers at once (podtui/services/cluster_records.py): real processes
saving and forgetting records concurrently lose none, and a reader never sees half a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from podtui.services import cluster_records as records

WRITER = textwrap.dedent("""
    import sys
    from podtui.services.cluster_records import forget_cluster, save_cluster
    me = sys.argv[1]
    for i in range(40):
        save_cluster({"name": f"{me}-{i}", "server": "s", "backends": ["b"] * 20, "direct": False})
        if i % 2:
            forget_cluster(f"{me}-{i}")
""")


def test_concurrent_writers_lose_no_record_and_readers_never_see_half_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PODTUI_CONFIG_DIR", str(tmp_path / "cfg"))
    env = {**os.environ, "PODTUI_CONFIG_DIR": str(tmp_path / "cfg")}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, f"w{n}"], env=env) for n in range(4)]
    reads = 0
    while any(w.poll() is None for w in writers):
        path = records.clusters_file()
        if path.exists():
            json.loads(path.read_text())   # always a whole file (written by rename)
            reads += 1
    assert [w.returncode for w in writers] == [0, 0, 0, 0]
    kept = records.load_clusters()
    assert sorted(kept) == sorted(f"w{n}-{i}" for n in range(4) for i in range(0, 40, 2)), len(kept)
    assert reads > 0


def test_update_keeps_what_the_change_keeps_and_find_names_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("PODTUI_CONFIG_DIR", str(tmp_path / "cfg"))
    records.save_cluster({"name": "ic", "server": "p0", "kind": "instant", "cluster_id": "cl_1"})
    merged = records.update_cluster("ic", lambda old: {**old, "server": "p0", "linked_at": "now"})
    assert merged == {"name": "ic", "server": "p0", "kind": "instant", "cluster_id": "cl_1", "linked_at": "now"}
    assert records.forget_cluster("ic") is True and records.forget_cluster("ic") is False
    records.clusters_file().write_text("[1, 2")   # damaged by hand: read as none, never a traceback
    assert records.load_clusters() == {}

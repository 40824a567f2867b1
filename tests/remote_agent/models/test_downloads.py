"""Downloads with the real huggingface_hub client against the loopback hub double (conftest.py)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from remote_agent.models import ModelError, resolve_model, store
from tests.remote_agent.models.conftest import GRANTED_TOKEN, body_gets

REPO = "org/tiny-GGUF"
FINE_GRAINED = "Read access to contents of all public gated repos you can access"


def test_single_file_url_with_progress(hub, models_dir, tiny_model):
    events = []
    url = f"https://huggingface.co/{REPO}/resolve/main/tiny.Q4_K_M.gguf"
    path = resolve_model(url, models_dir, on_progress=events.append)
    assert path == models_dir / REPO / "tiny.Q4_K_M.gguf"
    assert path.read_bytes() == tiny_model.read_bytes()
    downloads = [e for e in events if e["phase"] == "download"]
    assert downloads[0]["bytes"] == 0 and downloads[-1]["bytes"] == downloads[-1]["total"] == tiny_model.stat().st_size
    assert all(set(e) == {"phase", "file", "bytes", "total", "rate_bps"} for e in downloads)
    assert [e["bytes"] for e in downloads] == sorted(e["bytes"] for e in downloads)
    assert downloads[-1]["rate_bps"] > 0
    assert any(e["phase"] == "verify" for e in events)  # sha256 checked against X-Linked-Etag
    (entry,) = store.list_models(models_dir)
    assert entry["name"] == f"{REPO}/tiny.Q4_K_M.gguf" and entry["quant"] == "Q4_K_M" and entry["trained_ctx"] == 4096
    # A second resolve finds it on disk: one HEAD, no body.
    hub.requests.clear()
    assert resolve_model(url, models_dir) == path
    assert body_gets(hub) == []
    # Its models.list name resolves with no hub at all.
    hub.requests.clear()
    assert resolve_model(entry["name"], models_dir) == path and hub.requests == []


def test_quant_filter_is_case_insensitive_and_fetches_only_that_file(hub, models_dir, tiny_model_b):
    path = resolve_model(f"{REPO}:q8_0", models_dir)
    assert path.name == "tiny.Q8_0.gguf" and path.read_bytes() == tiny_model_b.read_bytes()
    assert [r.path for r in hub.requests if r.method == "HEAD"] == [f"/{REPO}/resolve/main/tiny.Q8_0.gguf"]
    assert [e["name"] for e in store.list_models(models_dir)] == [f"{REPO}/tiny.Q8_0.gguf"]


def test_unknown_quant_lists_the_ones_there_but_no_projector(hub, models_dir):
    with pytest.raises(ModelError) as e:
        resolve_model(f"{REPO}:Q5_K_M", models_dir)
    assert e.value.code == "not_found"
    # The repo also has mmproj-tiny-F16.gguf, a projector that is never picked: F16 is not offered.
    assert "matches quant Q5_K_M; it has Q4_K_M, Q6_K, Q8_0. Use one of those." in str(e.value)
    with pytest.raises(ModelError) as e:
        resolve_model(f"hf.co/{REPO}:F16", models_dir)
    assert e.value.code == "not_found" and "it has Q4_K_M, Q6_K, Q8_0." in str(e.value)
    assert body_gets(hub) == []


def test_repo_picks_first_gguf_in_order_skipping_projectors(hub, models_dir):
    # Q6_K/… < mmproj… < split/… < sub/… < tiny… in code-point order; mmproj is a projector.
    path = resolve_model(f"https://huggingface.co/{REPO}", models_dir)
    assert path == models_dir / REPO / "Q6_K" / "tiny-Q6_K-00001-of-00003.gguf"
    assert len(list((models_dir / REPO / "Q6_K").glob("*.gguf"))) == 3


def test_directory_url_picks_first_gguf_in_that_directory(hub, models_dir, tiny_model):
    path = resolve_model(f"https://huggingface.co/{REPO}/tree/main/sub", models_dir)
    assert path == models_dir / REPO / "sub" / "a-model.Q4_K_M.gguf"
    assert path.read_bytes() == tiny_model.read_bytes()
    assert not (models_dir / REPO / "sub" / "b-model.gguf").exists()


def test_split_model_fetches_every_part_and_returns_part_one(hub, models_dir, tiny_split_model):
    path = resolve_model(f"{REPO}/split/tiny-00002-of-00003.gguf", models_dir)
    assert path == models_dir / REPO / "split" / "tiny-00001-of-00003.gguf"
    for got, want in zip(store.split_parts(path), store.split_parts(tiny_split_model)):
        assert got.read_bytes() == want.read_bytes()
    (entry,) = store.list_models(models_dir)
    assert entry["parts"] == 3 and entry["complete"] and entry["trained_ctx"] == 4096


def test_quant_filter_selects_split_model_in_a_quant_directory(hub, models_dir):
    path = resolve_model(f"{REPO}:Q6_K", models_dir)
    assert path.name == "tiny-Q6_K-00001-of-00003.gguf" and all(p.exists() for p in store.split_parts(path))


@pytest.mark.timeout(60)
def test_dropped_connection_resumes_within_the_call(hub, models_dir, tiny_model):
    hub.cut_after(REPO, "tiny.Q4_K_M.gguf", 12_000_000)
    path = resolve_model(f"{REPO}/tiny.Q4_K_M.gguf", models_dir)
    assert path.read_bytes() == tiny_model.read_bytes()
    gets = body_gets(hub)
    assert len(gets) == 2 and gets[0].body_bytes == 12_000_000
    # huggingface_hub writes in 10 MiB chunks: the retry asks for the rest of what reached the disk.
    assert gets[1].range == f"bytes={10 * 2**20}-" and gets[1].status == 206


@pytest.mark.timeout(60)
def test_failure_beyond_hub_retries_keeps_bytes_and_next_call_resumes(hub, models_dir, tiny_model):
    size = tiny_model.stat().st_size
    hub.cut_after(REPO, "tiny.Q4_K_M.gguf", 12_000_000)
    hub.fail_next(REPO, "tiny.Q4_K_M.gguf", 503)  # huggingface_hub does not retry a 503 on the body
    with pytest.raises(ModelError) as e:
        resolve_model(f"{REPO}/tiny.Q4_K_M.gguf", models_dir)
    assert e.value.code == "network" and "503" in str(e.value) and "resumes" in str(e.value)
    (partial,) = (models_dir / ".remote-agent" / "partial").rglob("*.part")
    kept = partial.stat().st_size
    assert kept == 10 * 2**20
    assert store.list_models(models_dir) == []  # a partial is never shown as a model
    hub.requests.clear()
    path = resolve_model(f"{REPO}/tiny.Q4_K_M.gguf", models_dir)
    assert path.read_bytes() == tiny_model.read_bytes()
    (get,) = body_gets(hub)
    assert get.range == f"bytes={kept}-" and get.body_bytes == size - kept
    assert not partial.exists()


@pytest.mark.timeout(60)
def test_daemon_killed_mid_download_resumes_after_restart(hub, models_dir, tiny_model):
    """The process doing the download dies by SIGKILL (no cleanup at all); a new one resumes."""
    size = tiny_model.stat().st_size
    hub.throttle_bps = 5 * 2**20  # ~3.5 s for the 17 MB file: time to kill it between its two chunks
    code = ("import sys; from pathlib import Path; from remote_agent.models import resolve_model; "
            f"resolve_model('{REPO}/tiny.Q4_K_M.gguf', Path(sys.argv[1]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(models_dir)], env={**os.environ},
                            cwd=Path(__file__).resolve().parents[3])
    partial_dir = models_dir / ".remote-agent" / "partial"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        parts = list(partial_dir.rglob("*.part")) if partial_dir.exists() else []
        if parts and parts[0].stat().st_size > 0:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    (partial,) = partial_dir.rglob("*.part")
    kept = partial.stat().st_size
    assert 0 < kept < size
    hub.throttle_bps = None
    hub.requests.clear()
    path = resolve_model(f"{REPO}/tiny.Q4_K_M.gguf", models_dir)
    assert path.read_bytes() == tiny_model.read_bytes()
    (get,) = body_gets(hub)
    assert get.range == f"bytes={kept}-"


@pytest.mark.timeout(60)
def test_cancel_stops_download_and_keeps_bytes(hub, models_dir, tiny_model):
    cancel = threading.Event()
    hub.throttle_bps = 16 * 2**20

    def on_progress(event):
        if event["phase"] == "download" and event["bytes"] > 0:
            cancel.set()

    with pytest.raises(ModelError) as e:
        resolve_model(f"{REPO}/tiny.Q4_K_M.gguf", models_dir, on_progress=on_progress, cancel=cancel)
    assert e.value.code == "cancelled" and "resumes" in str(e.value)
    assert not (models_dir / REPO / "tiny.Q4_K_M.gguf").exists()
    (partial,) = (models_dir / ".remote-agent" / "partial").rglob("*.part")
    kept = partial.stat().st_size
    assert kept == 10 * 2**20  # the first chunk was on disk when the cancel was seen
    hub.throttle_bps = None
    hub.requests.clear()
    assert resolve_model(f"{REPO}/tiny.Q4_K_M.gguf", models_dir).read_bytes() == tiny_model.read_bytes()
    (get,) = body_gets(hub)
    assert get.range == f"bytes={kept}-"


def test_checksum_mismatch_is_refused_and_bad_file_removed(hub, models_dir):
    hub.corrupt(REPO, "tiny.Q4_K_M.gguf")
    with pytest.raises(ModelError) as e:
        resolve_model(f"{REPO}/tiny.Q4_K_M.gguf", models_dir)
    assert e.value.code == "checksum"
    assert hub.file(REPO, "tiny.Q4_K_M.gguf").sha256 in str(e.value) and "removed" in str(e.value)
    assert not (models_dir / REPO / "tiny.Q4_K_M.gguf").exists()
    assert list((models_dir / ".remote-agent" / "partial").rglob("*.part")) == []
    assert store.list_models(models_dir) == []


def test_gated_repo_needs_token_and_token_is_never_shown(hub, models_dir, tiny_model, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    ref = "org/gated-GGUF:Q4_K_M"
    with pytest.raises(ModelError) as no_token:
        resolve_model(ref, models_dir)
    assert no_token.value.code == "needs_token"
    assert "HF_TOKEN" in str(no_token.value) and "license" in str(no_token.value)
    assert "https://huggingface.co/org/gated-GGUF" in str(no_token.value)
    assert FINE_GRAINED in str(no_token.value)  # the hub's wording for the fine-grained permission
    wrong = "hf_wrongTOKEN000000000000000000000"
    with pytest.raises(ModelError) as bad_token:
        resolve_model(ref, models_dir, token=wrong)
    assert bad_token.value.code == "needs_token" and "accept the license" in str(bad_token.value)
    assert FINE_GRAINED in str(bad_token.value)
    path = resolve_model(ref, models_dir, token=GRANTED_TOKEN)
    assert path.read_bytes() == tiny_model.read_bytes()
    # The token went to the hub, not to the CDN the file redirects to.
    assert all(r.authorized for r in hub.requests if "/cdn/" not in r.path and r.status != 401)
    assert not any(r.authorized for r in body_gets(hub))
    out, err = capfd.readouterr()
    shown = str(no_token.value) + str(bad_token.value) + caplog.text + out + err
    assert GRANTED_TOKEN not in shown and wrong not in shown


@pytest.mark.timeout(60)
def test_offline_mode_fails_clearly_and_uses_local_copy(hub, models_dir, tiny_model):
    """A fresh process with HF_HUB_OFFLINE=1 (as huggingface_hub reads it at import)."""
    code = ("import sys; from pathlib import Path; from remote_agent.models import resolve_model, ModelError\n"
            "try: print(resolve_model(sys.argv[2], Path(sys.argv[1])))\n"
            "except ModelError as e: print('ERROR', e.code, e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cwd = Path(__file__).resolve().parents[3]

    def run(ref):
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-c", code, str(models_dir), ref], env=env, cwd=cwd,
                             capture_output=True, text=True, timeout=30).stdout.strip()
        return out, time.monotonic() - started

    out, took = run(f"{REPO}:Q4_K_M")
    assert out.startswith("ERROR offline") and "HF_HUB_OFFLINE" in out and took < 10
    assert hub.requests == []
    resolve_model(f"{REPO}:Q4_K_M", models_dir)  # online, in this process
    out, _ = run(f"{REPO}:Q4_K_M")
    assert out == str(models_dir / REPO / "sub" / "a-model.Q4_K_M.gguf")


def test_unreachable_hub_is_a_network_error_or_the_local_copy(hub, models_dir, monkeypatch):
    resolve_model(f"{REPO}/tiny.Q4_K_M.gguf", models_dir)
    hub.stop()  # nothing listens there any more
    started = time.monotonic()
    assert resolve_model(f"{REPO}/tiny.Q4_K_M.gguf", models_dir) == models_dir / REPO / "tiny.Q4_K_M.gguf"
    with pytest.raises(ModelError) as e:
        resolve_model(f"{REPO}:Q8_0", models_dir)
    assert e.value.code == "network" and "could not download" in str(e.value)
    assert time.monotonic() - started < 15


def test_hostile_listing_path_is_refused(hub, models_dir, tiny_model):
    hub.add_repo("evil/repo", {"../../../escape.gguf": tiny_model})
    with pytest.raises(ModelError) as e:
        resolve_model("evil/repo", models_dir)
    assert e.value.code == "bad_ref" and "traversal" in str(e.value)
    assert not list(models_dir.parent.rglob("escape.gguf"))


def test_traversal_in_ref_refused_before_any_request(hub, models_dir):
    for ref in (f"{REPO}/../../x.gguf", f"https://huggingface.co/{REPO}/resolve/main/../../../x.gguf"):
        with pytest.raises(ModelError) as e:
            resolve_model(ref, models_dir)
        assert e.value.code == "bad_ref"
    assert hub.requests == []


def test_non_gguf_refused(hub, models_dir):
    with pytest.raises(ModelError) as e:
        resolve_model("org/safetensors-only/model.safetensors", models_dir)
    assert e.value.code == "not_gguf" and "GGUF" in str(e.value)
    assert hub.requests == []
    with pytest.raises(ModelError) as e:
        resolve_model("org/safetensors-only", models_dir)
    assert e.value.code == "not_found" and "no .gguf file" in str(e.value)


def test_gguf_named_file_that_is_not_gguf_is_removed(hub, models_dir):
    hub.add_repo("org/liar", {"model.gguf": b"<html>not a model</html>" * 1000})
    with pytest.raises(ModelError) as e:
        resolve_model("org/liar/model.gguf", models_dir)
    assert e.value.code == "not_gguf" and "removed" in str(e.value)
    assert not (models_dir / "org/liar/model.gguf").exists()


def test_missing_file_and_repo_are_not_found(hub, models_dir):
    with pytest.raises(ModelError) as e:
        resolve_model(f"{REPO}/nope.gguf", models_dir)
    assert e.value.code == "not_found" and "nope.gguf" in str(e.value)
    with pytest.raises(ModelError) as e:
        resolve_model("org/does-not-exist", models_dir)
    assert e.value.code == "not_found" and "HF_TOKEN" in str(e.value)


def test_disk_full_precheck_names_the_numbers(hub, models_dir, tiny_model):
    """The reserve that must stay free is raised to the volume's real free space, so this runs
    wherever the tests run; test_disk_full.py does it on a real 2 MiB filesystem when one can be
    mounted."""
    free = shutil.disk_usage(models_dir).free
    with pytest.raises(ModelError) as e:
        resolve_model(f"{REPO}/tiny.Q4_K_M.gguf", models_dir, keep_free_bytes=free)
    assert e.value.code == "disk_full"
    assert f"({tiny_model.stat().st_size} bytes)" in str(e.value) and "models.delete" in str(e.value)
    assert body_gets(hub) == []  # refused before a byte was downloaded


def test_split_model_missing_a_part_on_the_hub_is_named(hub, models_dir, tiny_split_model):
    parts = store.split_parts(tiny_split_model)
    hub.add_repo("org/broken-split", {"m-00001-of-00003.gguf": parts[0], "m-00002-of-00003.gguf": parts[1]})
    for ref in ("org/broken-split", "org/broken-split/m-00001-of-00003.gguf"):
        with pytest.raises(ModelError) as e:
            resolve_model(ref, models_dir)
        assert e.value.code == "not_found" and "m-00003-of-00003.gguf" in str(e.value)
    assert body_gets(hub) == []  # nothing downloaded for a model that cannot load


def test_hf_token_from_environment_is_used(hub, models_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", GRANTED_TOKEN)
    assert resolve_model("org/gated-GGUF", models_dir).name == "gated.Q4_K_M.gguf"

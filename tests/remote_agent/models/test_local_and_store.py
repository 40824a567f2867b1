"""Local MODEL paths and MODEL_DIR bookkeeping, on the test bed's real tiny GGUF files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from remote_agent.models import ModelError, resolve_model, store


@pytest.fixture
def models_dir(tmp_path, tiny_model, tiny_split_model) -> Path:
    d = tmp_path / "models"
    (d / "org" / "repo").mkdir(parents=True)
    shutil.copy(tiny_model, d / "org" / "repo" / "tiny-a.Q4_K_M.gguf")
    for part in store.split_parts(tiny_split_model):
        shutil.copy(part, d / part.name)
    store.ensure_layout(d)
    return d


def test_local_file_is_returned_as_is(tiny_model, tmp_path):
    assert resolve_model(str(tiny_model), tmp_path) == tiny_model


def test_local_split_part_gives_part_one(tiny_split_model, tmp_path):
    part3 = store.split_parts(tiny_split_model)[2]
    assert resolve_model(str(part3), tmp_path) == tiny_split_model


def test_local_directory_picks_first_gguf_in_order(models_dir, tmp_path):
    assert resolve_model(str(models_dir), tmp_path).name == "tiny-a.Q4_K_M.gguf"  # "org/…" < "tiny-split…"


def test_name_from_models_list_resolves_without_network(models_dir):
    for entry in store.list_models(models_dir):
        assert resolve_model(entry["name"], models_dir) == Path(entry["path"])


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(ModelError) as e:
        resolve_model(str(tmp_path / "nope.gguf"), tmp_path)
    assert e.value.code == "not_found" and "nope.gguf" in str(e.value)


def test_non_gguf_local_file_refused(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 not a gguf at all")
    with pytest.raises(ModelError) as e:
        resolve_model(str(bad), tmp_path)
    assert e.value.code == "not_gguf" and "GGUF magic" in str(e.value)


def test_incomplete_split_model_names_missing_part(tiny_split_model, tmp_path):
    for part in store.split_parts(tiny_split_model)[:2]:
        shutil.copy(part, tmp_path / part.name)
    with pytest.raises(ModelError) as e:
        resolve_model(str(tmp_path / tiny_split_model.name), tmp_path)
    assert e.value.code == "not_found" and "00003-of-00003" in str(e.value)


def test_traversal_out_of_models_dir_refused(models_dir):
    with pytest.raises(ModelError) as e:
        resolve_model("org/repo/../../../etc/passwd", models_dir)
    assert e.value.code == "bad_ref" and ".." in str(e.value)


def test_list_models_shape(models_dir, tiny_model, tiny_split_model):
    entries = {e["name"]: e for e in store.list_models(models_dir)}
    assert set(entries) == {"org/repo/tiny-a.Q4_K_M.gguf", tiny_split_model.name}
    single = entries["org/repo/tiny-a.Q4_K_M.gguf"]
    assert single["size_bytes"] == tiny_model.stat().st_size
    assert single["quant"] == "Q4_K_M"
    assert single["trained_ctx"] == 4096  # llama.context_length written by the test bed
    assert single["last_used"] is None
    split = entries[tiny_split_model.name]
    assert split["size_bytes"] == sum(p.stat().st_size for p in store.split_parts(tiny_split_model))
    assert split["parts"] == 3 and split["complete"] is True and split["trained_ctx"] == 4096


def test_mark_used_then_list_shows_time(models_dir):
    path = models_dir / "org" / "repo" / "tiny-a.Q4_K_M.gguf"
    store.mark_used(path)
    (entry,) = [e for e in store.list_models(models_dir) if e["path"] == str(path)]
    assert isinstance(entry["last_used"], float) and entry["last_used"] > 1.7e9


def test_delete_model_removes_all_parts_and_empty_dirs(models_dir, tiny_split_model):
    result = store.delete_model(models_dir, tiny_split_model.name)
    assert len(result["files"]) == 3 and result["freed_bytes"] > 0
    assert not list(models_dir.glob("tiny-split-*"))
    result = store.delete_model(models_dir, "org/repo/tiny-a.Q4_K_M.gguf")
    assert not (models_dir / "org").exists()
    assert store.list_models(models_dir) == []


@pytest.mark.parametrize("name", ["../x.gguf", "/etc/passwd", "org/../../x.gguf", "missing.gguf", ".remote-agent"])
def test_delete_refuses_traversal_and_unknown_names(models_dir, name):
    with pytest.raises(ModelError) as e:
        store.delete_model(models_dir, name)
    assert e.value.code in {"bad_ref", "not_found"}
    assert len(store.list_models(models_dir)) == 2

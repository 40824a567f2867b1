"""Every MODEL form users type (seeds 000 and 004) and every form other tools and the hub's pages
hand out (issue 16) parses to what it means; bad ones are refused with what to keep."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote_agent.models import ModelError
from remote_agent.models.refs import HubRef, LocalRef, parse_model_ref
from remote_agent.models.select import matches_quant, pick_model


@pytest.mark.parametrize("text, expected", [
    # seed 000's example: a URL to one file
    ("https://huggingface.co/TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/resolve/main/tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
     HubRef("TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", "main", "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf", True)),
    ("https://huggingface.co/org/repo/resolve/main/x.gguf?download=true", HubRef("org/repo", "main", "x.gguf", True)),
    ("https://huggingface.co/org/repo/blob/v1.0/dir/x.gguf", HubRef("org/repo", "v1.0", "dir/x.gguf", True)),
    ("https://hf.co/org/repo/resolve/main/a%20b.gguf", HubRef("org/repo", "main", "a b.gguf", True)),
    # seed 000: a repo, or a directory in it
    ("https://huggingface.co/org/repo", HubRef("org/repo")),
    ("https://huggingface.co/org/repo/", HubRef("org/repo")),
    ("https://huggingface.co/org/repo/tree/main", HubRef("org/repo")),
    ("https://huggingface.co/org/repo/tree/main/Q4_K_M", HubRef("org/repo", "main", "Q4_K_M")),
    # seed 004: org/repo and org/repo:QUANT
    ("ggml-org/gemma-3-1b-it-GGUF", HubRef("ggml-org/gemma-3-1b-it-GGUF")),
    ("TheBloke/Llama-2-7B-GGUF:Q4_K_M", HubRef("TheBloke/Llama-2-7B-GGUF", quant="Q4_K_M")),
    ("TheBloke/Llama-2-7B-GGUF:q4_k_m", HubRef("TheBloke/Llama-2-7B-GGUF", quant="q4_k_m")),
    # org/repo/path/file.gguf and a directory inside a repo
    ("org/repo/sub/dir/file.gguf", HubRef("org/repo", "main", "sub/dir/file.gguf", True)),
    ("org/repo/model-00002-of-00003.gguf", HubRef("org/repo", "main", "model-00002-of-00003.gguf", True)),
    ("org/repo/Q4_K_M", HubRef("org/repo", "main", "Q4_K_M")),
    # seed 000 Q4: local paths
    ("/mnt/tinyllama.gguf", LocalRef(Path("/mnt/tinyllama.gguf"))),
    ("./models/x.gguf", LocalRef(Path("./models/x.gguf"))),
    ("../x.gguf", LocalRef(Path("../x.gguf"))),
    ("file:///mnt/a%20b.gguf", LocalRef(Path("/mnt/a b.gguf"))),
])
def test_model_forms(text, expected):
    assert parse_model_ref(text) == expected


@pytest.mark.parametrize("text, expected", [
    # Ollama's and Docker Model Runner's form (`ollama run hf.co/org/repo:Q4_K_M`): was "a quant
    # filter applies to a whole repo" with hf.co read as the org
    ("hf.co/org/repo:Q4_K_M", HubRef("org/repo", quant="Q4_K_M")),
    ("hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:q4_k_m", HubRef("bartowski/Qwen2.5-7B-Instruct-GGUF", quant="q4_k_m")),
    # was repo "hf.co/org" with directory "repo"
    ("hf.co/org/repo", HubRef("org/repo")),
    ("HF.CO/Org/Repo", HubRef("Org/Repo")),
    # the hub's pages, pasted without https://
    ("huggingface.co/org/repo", HubRef("org/repo")),
    ("huggingface.co/org/repo/", HubRef("org/repo")),
    ("www.huggingface.co/org/repo", HubRef("org/repo")),
    ("huggingface.co/org/repo/resolve/main/x.gguf", HubRef("org/repo", "main", "x.gguf", True)),
    ("huggingface.co/org/repo/resolve/main/x.gguf?download=true", HubRef("org/repo", "main", "x.gguf", True)),
    ("hf.co/org/repo/blob/main/sub/x.gguf", HubRef("org/repo", "main", "sub/x.gguf", True)),
    ("huggingface.co/org/repo/tree/main", HubRef("org/repo")),
    ("huggingface.co/org/repo/tree/main/Q4_K_M", HubRef("org/repo", "main", "Q4_K_M")),
    # the hub's other file routes (raw bytes, blame view) name the same file
    ("https://huggingface.co/org/repo/raw/main/x.gguf", HubRef("org/repo", "main", "x.gguf", True)),
    ("https://huggingface.co/org/repo/blame/main/x.gguf", HubRef("org/repo", "main", "x.gguf", True)),
    # a quant after a repo URL
    ("https://hf.co/org/repo:Q4_K_M", HubRef("org/repo", quant="Q4_K_M")),
    ("https://huggingface.co/org/repo:Q8_0", HubRef("org/repo", quant="Q8_0")),
    # huggingface_hub's URIs, hf://[models/]org/repo[@rev][/path]: was "bad quant '//org/repo'"
    ("hf://org/repo", HubRef("org/repo")),
    ("hf://org/repo/", HubRef("org/repo")),
    ("hf://org/repo/x.gguf", HubRef("org/repo", "main", "x.gguf", True)),
    ("hf://org/repo/sub/dir/x.gguf", HubRef("org/repo", "main", "sub/dir/x.gguf", True)),
    ("hf://org/repo/Q4_K_M", HubRef("org/repo", "main", "Q4_K_M")),
    ("hf://org/repo@v1.0/x.gguf", HubRef("org/repo", "v1.0", "x.gguf", True)),
    ("hf://org/repo@v1.0", HubRef("org/repo", "v1.0")),
    ("hf://models/org/repo", HubRef("org/repo")),
    ("hf://org/repo:Q4_K_M", HubRef("org/repo", quant="Q4_K_M")),
    ("hf://org/repo@v1.0:Q4_K_M", HubRef("org/repo", "v1.0", quant="Q4_K_M")),
    ("HF://org/repo", HubRef("org/repo")),
    # LocalAI's gallery form
    ("huggingface://TheBloke/phi-2-GGUF/phi-2.Q8_0.gguf", HubRef("TheBloke/phi-2-GGUF", "main", "phi-2.Q8_0.gguf", True)),
])
def test_forms_from_other_tools_and_the_hubs_pages(text, expected):
    assert parse_model_ref(text) == expected


@pytest.mark.parametrize("text", ["hf.co/org/repo", "hf.co/org/repo:Q4_K_M", "huggingface.co/org/repo",
                                  "hf.co/org/repo/resolve/main/x.gguf"])
def test_a_hub_host_is_never_an_org_also_with_a_models_dir(tmp_path, text):
    """The agent parses with its MODEL_DIR (a stored name wins); a host is still not an org there."""
    (tmp_path / "org" / "repo").mkdir(parents=True)
    assert parse_model_ref(text, tmp_path).repo_id == "org/repo"


@pytest.mark.parametrize("text, keep", [
    ("ollama run hf.co/org/repo:Q4_K_M", "give only hf.co/org/repo:Q4_K_M."),
    ("docker model run hf.co/org/repo:Q4_K_M", "give only hf.co/org/repo:Q4_K_M."),
    ("llama-server -hf org/repo:Q4_K_M", "give only org/repo:Q4_K_M."),
    ("llama-cli -hf org/repo:Q4_K_M -p hello", "give only org/repo:Q4_K_M."),
    ("org/repo:Q4_K_M --ctx-size 8192", "give only org/repo:Q4_K_M."),
    # the download line of TheBloke's model cards
    ("huggingface-cli download TheBloke/X-GGUF x.Q4_K_M.gguf --local-dir . --local-dir-use-symlinks False",
     "give only TheBloke/X-GGUF/x.Q4_K_M.gguf."),
    ("hf download org/repo sub/x.gguf", "give only org/repo/sub/x.gguf."),
    ("hf download org/repo ../x.gguf", "give only org/repo."),
])
def test_pasted_command_lines_are_refused_naming_the_part_to_keep(text, keep):
    with pytest.raises(ModelError) as e:
        parse_model_ref(text)
    assert e.value.code == "bad_ref"
    assert "command line" in str(e.value) and "drop the prefix" in str(e.value) and keep in str(e.value)
    kept = str(e.value).split("give only ", 1)[1].rstrip(".")
    assert isinstance(parse_model_ref(kept), HubRef)  # what it says to keep is a valid MODEL


@pytest.mark.parametrize("text, fragments", [
    ("lmstudio://open_from_hf?model=org/repo", ["lmstudio://", "Drop the prefix", "org/repo."]),
    ("s3://bucket/x.gguf", ["s3://", "cannot download"]),
    ("hf://datasets/org/data/x.gguf", ["a dataset, not a model repo"]),
    ("hf://spaces/org/app", ["a Space, not a model repo"]),
    ("hf://buckets/org/b/x.gguf", ["a bucket, not a model repo"]),
    ("hf.co/datasets/org/data", ["'hf.co/datasets/org/data' points to a dataset"]),
    ("hf://org", ["names no repo", "hf://ORG/REPO"]),
    ("hf://", ["names no repo"]),
    ("hf.co/org", ["'hf.co/org' names no repo"]),
    ("hf.co", ["names no repo"]),
    ("hf://org/repo@/x.gguf", ["bad revision"]),
    ("hf://org/repo/sub:Q4_K_M", ["whole repo"]),
    ("hf://org/repo/../../x.gguf", ["traversal"]),
    ("hf.co/org/repo/resolve/main/../../x.gguf", ["traversal"]),
])
def test_forms_that_cannot_be_honoured_say_why(text, fragments):
    with pytest.raises(ModelError) as e:
        parse_model_ref(text)
    assert e.value.code == "bad_ref"
    for fragment in fragments:
        assert fragment in str(e.value)


def test_home_path_expands():
    assert parse_model_ref("~/m.gguf") == LocalRef(Path.home() / "m.gguf")


def test_name_in_models_dir_is_local(tmp_path):
    (tmp_path / "org" / "repo").mkdir(parents=True)
    (tmp_path / "org" / "repo" / "x.gguf").write_bytes(b"GGUF")
    assert parse_model_ref("org/repo/x.gguf", tmp_path) == LocalRef(tmp_path / "org/repo/x.gguf")
    assert parse_model_ref("org/repo/y.gguf", tmp_path) == HubRef("org/repo", "main", "y.gguf", True)


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("justaname", "not a file in MODEL_DIR"),
    ("org/repo/../../etc/passwd.gguf", "'..'"),
    ("org/repo/a/../b.gguf", "'..'"),
    ("org/repo//etc/x.gguf", "absolute paths are not allowed"),
    ("https://huggingface.co/org/repo/resolve/main/../../../etc/passwd", "traversal"),
    ("https://huggingface.co/org/repo/resolve/main//etc/passwd", "absolute paths are not allowed"),
    ("https://huggingface.co/org/repo/resolve/main/a\\..\\b.gguf", "traversal"),
    ("https://huggingface.co/org/repo/tree/main/%2E%2E/x", "traversal"),
    ("org/re po", "contains a space"),
    ("../org/repo", None),  # a relative local path, not a repo: parsed as local (no error)
    ("https://example.com/org/repo/resolve/main/x.gguf", "not Hugging Face"),
    ("https://huggingface.co/org", "names no repo"),
    ("https://huggingface.co/datasets/org/data", "dataset"),
    ("https://huggingface.co/org/repo/commits/main", "expected"),
    ("https://huggingface.co/org/repo/resolve/main", "names no file"),
    ("org/repo:Q4 K M", "bad quant"),
    ("org/repo/sub:Q4_K_M", "whole repo"),
])
def test_bad_refs_refused_with_reason(text, fragment):
    if fragment is None:
        assert isinstance(parse_model_ref(text), LocalRef)
        return
    with pytest.raises(ModelError) as e:
        parse_model_ref(text)
    assert e.value.code == "bad_ref"
    assert fragment in str(e.value)


def test_hf_endpoint_host_urls_accepted(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:8123")
    assert parse_model_ref("http://127.0.0.1:8123/org/repo/resolve/main/x.gguf") == HubRef("org/repo", "main", "x.gguf", True)


def test_a_mirror_host_is_not_an_org_either(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com")
    assert parse_model_ref("hf-mirror.com/org/repo:Q4_K_M") == HubRef("org/repo", quant="Q4_K_M")
    assert parse_model_ref("hf-mirror.com/org/repo/resolve/main/x.gguf") == HubRef("org/repo", "main", "x.gguf", True)


@pytest.mark.parametrize("path, quant, hit", [
    ("m.Q4_K_M.gguf", "Q4_K_M", True),
    ("m-q4_k_m.gguf", "Q4_K_M", True),
    ("Q4_K_M/m-00001-of-00002.gguf", "q4_k_m", True),
    ("m-UD-Q4_K_M.gguf", "Q4_K_M", True),
    ("m.IQ4_K_M.gguf", "Q4_K_M", False),
    ("m.Q4_K_M_L.gguf", "Q4_K_M", False),
    ("m.Q4_K.gguf", "Q4_K_M", False),
    ("m.Q4_K_S.gguf", "Q4_K", False),
])
def test_quant_matching(path, quant, hit):
    assert matches_quant(path, quant) is hit


def test_pick_model_order_split_and_projectors():
    paths = ["README.md", "mmproj-F16.gguf", "b.gguf", "a-00002-of-00002.gguf", "a-00001-of-00002.gguf", "c.Q8_0.gguf"]
    assert pick_model(paths) == ["a-00001-of-00002.gguf", "a-00002-of-00002.gguf"]
    assert pick_model(paths, "q8_0") == ["c.Q8_0.gguf"]
    assert pick_model(paths, "Q2_K") == []
    assert pick_model(["README.md"]) == []

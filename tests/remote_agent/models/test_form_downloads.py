"""Every MODEL form other tools and the hub's pages hand out downloads the right file through the
real huggingface_hub client and the hub double (issue 16, item 8): the host is never an org."""

from __future__ import annotations

import pytest

from remote_agent.models import resolve_model, store
from tests.remote_agent.models.conftest import body_gets

REPO = "org/tiny-GGUF"
FIRST_IN_REPO = "Q6_K/tiny-Q6_K-00001-of-00003.gguf"  # code-point order, projectors skipped


@pytest.mark.parametrize("form, stored", [
    # Ollama's / Docker Model Runner's form
    (f"hf.co/{REPO}:Q8_0", "tiny.Q8_0.gguf"),
    (f"hf.co/{REPO}:q4_k_m", "sub/a-model.Q4_K_M.gguf"),
    (f"hf.co/{REPO}", FIRST_IN_REPO),
    # the hub's pages, with or without https://
    (f"huggingface.co/{REPO}", FIRST_IN_REPO),
    (f"https://hf.co/{REPO}:Q8_0", "tiny.Q8_0.gguf"),
    (f"huggingface.co/{REPO}/resolve/main/tiny.Q4_K_M.gguf?download=true", "tiny.Q4_K_M.gguf"),
    (f"hf.co/{REPO}/blob/main/sub/b-model.gguf", "sub/b-model.gguf"),
    (f"https://huggingface.co/{REPO}/raw/main/tiny.Q4_K_M.gguf", "tiny.Q4_K_M.gguf"),
    (f"huggingface.co/{REPO}/tree/main/sub", "sub/a-model.Q4_K_M.gguf"),
    # huggingface_hub's URIs (and LocalAI's spelling of them)
    (f"hf://{REPO}", FIRST_IN_REPO),
    (f"hf://{REPO}/tiny.Q4_K_M.gguf", "tiny.Q4_K_M.gguf"),
    (f"hf://{REPO}:Q8_0", "tiny.Q8_0.gguf"),
    (f"hf://models/{REPO}/split/tiny-00002-of-00003.gguf", "split/tiny-00001-of-00003.gguf"),
    (f"huggingface://{REPO}/tiny.Q4_K_M.gguf", "tiny.Q4_K_M.gguf"),
])
def test_each_form_downloads_its_file(hub, models_dir, form, stored):
    path = resolve_model(form, models_dir)
    assert path == models_dir / REPO / stored
    assert path.read_bytes() == hub.file(REPO, stored).content
    # Every request for a repo names org/tiny-GGUF: none asked for a repo "hf.co/org" or similar.
    asked = [r.path for r in hub.requests if "/resolve/" in r.path or r.path.startswith("/api/models/")]
    assert asked and all(p.startswith((f"/{REPO}/resolve/", f"/api/models/{REPO}/")) for p in asked)
    assert len(body_gets(hub)) == len(store.split_parts(path))  # that file (every part of a split one)


def test_hf_uri_revision_reaches_the_hub(hub, models_dir, tiny_model):
    commit = hub.repos[REPO].commit
    path = resolve_model(f"hf://{REPO}@{commit}/tiny.Q4_K_M.gguf", models_dir)
    assert path.read_bytes() == tiny_model.read_bytes()
    assert [r.path for r in hub.requests if r.method == "HEAD"] == [f"/{REPO}/resolve/{commit}/tiny.Q4_K_M.gguf"]

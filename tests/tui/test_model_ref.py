"""The launch screen's MODEL check (the agent's parser): every seed form passes, typos get a message."""

import pytest

from podtui.services.inputs import model_problem


@pytest.mark.parametrize("model", [
    "bartowski/Qwen2.5-7B-Instruct-GGUF", "bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M",
    "org/repo/sub/dir/model-Q4_K_M.gguf",
    "https://huggingface.co/org/repo/resolve/main/x.gguf?download=true",
    "https://huggingface.co/org/repo/tree/main/Q4_K_M", "/models/x.gguf", "./x.gguf",
])
def test_accepted_forms(model):
    assert model_problem(model) is None


@pytest.mark.parametrize("model, words", [
    ("", "empty"), ("org/repo Q4", "space"), ("org/../etc", ".."),
    ("https://example.com/x.gguf", "huggingface.co"), ("justaname", "nor a Hugging Face repo"),
])
def test_refused_with_the_problem_and_the_forms(model, words):
    problem = model_problem(model)
    assert problem and words in problem

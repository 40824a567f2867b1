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


# ---- ctx: the agent's own parser (remote_agent.engine.ctx.parse_ctx) for the CLI and the TUI --

from podtui.errors import UsageProblem  # noqa: E402
from podtui.services.inputs import ctx_option, ctx_problem  # noqa: E402
from remote_agent.engine.ctx import parse_ctx  # noqa: E402


@pytest.mark.parametrize("text, value", [("8192", 8192), ("auto", "auto"), ("AUTO", "auto"),
                                         (" Auto ", "auto"), ("1", 1), (None, None)])
def test_ctx_forms_the_agent_accepts_mean_the_same_here(text, value):
    assert ctx_option(text) == value == parse_ctx(text)
    assert text is None or ctx_problem(text) is None


@pytest.mark.parametrize("text", ["0", "-1", "8k", "huge", "1.5"])
def test_ctx_the_agent_refuses_is_a_usage_problem_with_the_agents_message(text):
    with pytest.raises(ValueError) as agent:
        parse_ctx(text)
    with pytest.raises(UsageProblem) as cli:
        ctx_option(text)
    assert str(agent.value) in cli.value.title and cli.value.exit_code == 2
    assert ctx_problem(text) == str(agent.value)

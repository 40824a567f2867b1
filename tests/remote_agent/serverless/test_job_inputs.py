"""The job shapes the worker accepts and the one error form it answers with (no processes)."""

from __future__ import annotations

import json

import pytest

from remote_agent.serverless.config import ServerlessConfigError, concurrency_from, request_timeout_from
from remote_agent.serverless.errors import JobError, parse_job_error
from remote_agent.serverless.jobs import EngineCall, parse_job_input


@pytest.mark.parametrize("job_input, call", [
    ({"prompt": "Hi"}, EngineCall("POST", "/v1/completions", {"prompt": "Hi", "stream": False}, False, "normal")),
    ({"prompt": "Hi", "answerType": "stream", "max_tokens": 5},
     EngineCall("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 5, "stream": True}, True, "stream")),
    ({"openai_route": "/v1/models"}, EngineCall("GET", "/v1/models", None, False)),
    ({"openai_route": "/v1/models", "openai_input": {}}, EngineCall("GET", "/v1/models", None, False)),
    ({"openai_route": "/v1/models", "openai_input": None}, EngineCall("GET", "/v1/models", None, False)),
    ({"openai_route": "/v1/chat/completions", "openai_input": {"messages": [], "stream": True}},
     EngineCall("POST", "/v1/chat/completions", {"messages": [], "stream": True}, True)),
    ({"openai_route": "/v1/completions", "openai_input": {"prompt": "x"}, "future_field": 1},
     EngineCall("POST", "/v1/completions", {"prompt": "x"}, False)),
])
def test_each_accepted_shape_becomes_one_engine_call(job_input, call):
    assert parse_job_input(job_input) == call


@pytest.mark.parametrize("job_input, says", [
    ("just text", "str, not a JSON object"),
    ({}, "neither"),
    ({"prompt": ""}, "non-empty"),
    ({"prompt": "x", "answerType": "Stream"}, "answerType"),
    ({"prompt": "x", "system": "y"}, "unknown key(s) system"),
    ({"openai_route": "v1/models"}, "openai_route"),
    ({"openai_route": "/v1/models?x=1"}, "openai_route"),
    ({"openai_route": "/health"}, "openai_route"),
    ({"openai_route": "/v1/..%2f"}, "openai_route"),
    ({"openai_route": "/v1/chat/completions", "openai_input": ["a"]}, "openai_input is a list"),
])
def test_anything_else_is_bad_input_naming_the_problem_and_both_shapes(job_input, says):
    with pytest.raises(JobError) as caught:
        parse_job_input(job_input)
    assert caught.value.kind == "bad_input" and says in caught.value.message
    assert "seed 001" in caught.value.fix and "openai_route" in caught.value.fix


def test_the_error_travels_as_json_text_clients_parse():
    """The SDK makes a yielded {"error": X} the job's error as str(X) (§1.4): X is JSON text, so it parses."""
    error = JobError("crashed", "llama-server was killed by SIGKILL", "send it again", engine="llama-server",
                     engine_state="failed", pid=None)
    text = error.wire()
    assert str(text) == text and json.loads(text) == {"kind": "crashed", "message": "llama-server was killed by "
                                                      "SIGKILL", "fix": "send it again", "engine": "llama-server",
                                                      "engine_state": "failed"}
    assert parse_job_error(text) == json.loads(text)
    assert parse_job_error("handler: boom \ntraceback: ...") is None  # an SDK-made error is not ours


@pytest.mark.parametrize("env, value, source", [
    ({}, 1, "default"),
    ({"CONCURRENCY_MODIFIER": "3"}, 3, "CONCURRENCY_MODIFIER"),
    ({"MAX_CONCURRENCY": "8", "CONCURRENCY_MODIFIER": "3"}, 8, "MAX_CONCURRENCY"),
    ({"MAX_CONCURRENCY": " ", "CONCURRENCY_MODIFIER": "2"}, 2, "CONCURRENCY_MODIFIER"),
])
def test_max_concurrency_wins_over_the_seeds_concurrency_modifier(env, value, source):
    found = concurrency_from(env)
    assert (found.value, found.source) == (value, source)


@pytest.mark.parametrize("env", [{"MAX_CONCURRENCY": "0"}, {"MAX_CONCURRENCY": "1000"},
                                 {"CONCURRENCY_MODIFIER": "1.5"}, {"REQUEST_TIMEOUT": "soon"}])
def test_bad_numbers_are_refused_by_name(env):
    with pytest.raises(ServerlessConfigError, match=next(iter(env))):
        concurrency_from(env)
        request_timeout_from(env)

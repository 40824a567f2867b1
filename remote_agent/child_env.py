"""The environment every child process of the agent gets: the pod's own, minus its secrets.

HF_TOKEN is for the agent's downloads and RUNPOD_API_KEY for the idle stop; RUNPOD_AI_API_KEY is
a serverless worker's job-queue key, which only the runpod SDK in the worker gets
(boot/serverless.py hands it back to that one process); no engine, tool
(llama-fit-params, nvidia-smi) or sshd needs them, and llama.cpp's tools read HF_TOKEN on their
own. JUPYTER_PASSWORD is hashed by boot for Jupyter (remote_agent/jupyter.py); nothing else needs it.
API_KEY and LLAMA_API_KEY are the user's engine key (remote_agent/engine_key.py): the
engine gets the key the agent chose explicitly, and nothing else gets it at all (llama-server
would read an inherited LLAMA_API_KEY by itself, even when ARGS names another key). One list,
used by everything that starts a process. Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from remote_agent.engine_key import is_opt_out

SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RUNPOD_API_KEY", "RUNPOD_AI_API_KEY", "API_KEY", "LLAMA_API_KEY",
              "JUPYTER_PASSWORD")


def without_secrets(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) without the names in SECRET_ENV."""
    source = os.environ if env is None else env
    return {name: value for name, value in source.items() if name not in SECRET_ENV}


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The values of SECRET_ENV set in `env` (default: this process's), to mask in output; the
    engine key's opt-out word ("none") is no secret and would mask that word everywhere."""
    source = os.environ if env is None else env
    return [value for name in SECRET_ENV if (value := source.get(name, "").strip()) and not is_opt_out(value)]

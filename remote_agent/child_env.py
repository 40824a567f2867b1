"""The environment every child process of the agent gets: the pod's own, minus its secrets.

HF_TOKEN is for the agent's downloads and RUNPOD_API_KEY for the idle stop; no engine, tool
(llama-fit-params, nvidia-smi) or sshd needs them, and llama.cpp's tools read HF_TOKEN on their
own. One list, used by everything that starts a process. Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RUNPOD_API_KEY")


def without_secrets(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) without the names in SECRET_ENV."""
    source = os.environ if env is None else env
    return {name: value for name, value in source.items() if name not in SECRET_ENV}

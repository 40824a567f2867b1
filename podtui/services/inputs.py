"""The MODEL and ctx checks of the launch screen and the CLI, before anything is sent anywhere
(a pod created with a MODEL or CTX its agent refuses bills without ever serving).

They ask the agent's own parsers (remote_agent/models/refs.py and remote_agent/engine/ctx.py,
stdlib only), so the screen, the CLI and the pod can never disagree about which forms are valid.
No MODEL_DIR exists on the client, so a bare file name (valid on a pod that already has that
file) is refused here: a new pod has no files yet.
"""

from __future__ import annotations

import os

from remote_agent.engine.ctx import parse_ctx
from remote_agent.models.errors import ModelError
from remote_agent.models.refs import parse_model_ref

from podtui.errors import UsageProblem

CTX_FIX = "e.g. --ctx 8192 or --ctx auto"


def model_problem(text: str) -> str | None:
    """None when MODEL is valid, else the agent's message naming the problem and the forms."""
    try:
        parse_model_ref(text)
    except ModelError as error:
        return str(error)
    return None


def ctx_problem(text: str) -> str | None:
    """None when a ctx value (a positive number or `auto`, any case) is valid, else the agent's
    message."""
    try:
        parse_ctx(text)
    except ValueError as error:
        return str(error)
    return None


def ctx_option(text: str | None, option: str = "--ctx") -> int | str | None:
    """A ctx option's value as the agent reads it: a positive int, "auto", or None (not given).
    Raises UsageProblem (exit 2) with the agent's own message for anything else (0, -1, 8k)."""
    try:
        return parse_ctx(text)
    except ValueError as error:
        raise UsageProblem(f"{option}: {error}", CTX_FIX) from None


def hf_token_option(wanted: bool, environ: dict[str, str] | None = None) -> str | None:
    """HF_TOKEN from this environment when --with-hf-token was given (wanted), else None: a secret is
    passed on only when asked, and never taken from the command line. Raises UsageProblem (exit 2)
    when it was asked for and is not set."""
    if not wanted:
        return None
    token = (os.environ if environ is None else environ).get("HF_TOKEN", "").strip()
    if not token:
        raise UsageProblem("--with-hf-token given but HF_TOKEN is not set here",
                           "export HF_TOKEN=… first (https://huggingface.co/settings/tokens)")
    return token

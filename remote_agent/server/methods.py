"""The method table: each method's parameters (checked before anything runs) and its handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from remote_agent.engine.adapters import ADAPTERS
from remote_agent.engine.ctx import parse_ctx
from remote_agent.engine.logbuf import SOURCES
from remote_agent.fit.estimate import CACHE_TYPE_BYTES
from remote_agent.protocol import BAD_PARAMS, WireError

MAX_LOG_TAIL = 100_000


class ParamError(WireError):
    """Params that do not fit the method; the message names the parameter and what it must be.
    The daemon answers it as bad_params, the message prefixed with the method's name."""

    def __init__(self, message: str) -> None:
        super().__init__(BAD_PARAMS, message)


def _model(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ParamError("must be a non-empty string: a local GGUF path, an HF URL, org/repo or org/repo:QUANT")


def _ctx(value: Any) -> None:
    try:
        parse_ctx(value)
    except ValueError as exc:
        raise ParamError(str(exc).removeprefix("ctx ")) from None


def _engine(value: Any) -> None:
    if value is not None and value not in ADAPTERS:
        raise ParamError(f"must be one of: {', '.join(ADAPTERS)}")


def _args(value: Any) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ParamError("must be a list of strings or one shell-quoted string")


def _positive_int(limit: int) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ParamError(f"must be an integer from 0 to {limit}")
    return check


def _bool(value: Any) -> None:
    if not isinstance(value, bool):
        raise ParamError("must be true or false")


def _positive(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ParamError("must be a positive integer")


def _cache_type(value: Any) -> None:
    if value not in CACHE_TYPE_BYTES:
        raise ParamError(f"must be one of: {', '.join(sorted(CACHE_TYPE_BYTES))}")


def _budgets(value: Any) -> None:
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ParamError("must be a list of positive integers: MiB per RPC device, in APP_RPC_BACKENDS order")


def _source(value: Any) -> None:
    if value not in (*SOURCES, "all"):
        raise ParamError(f"must be one of: {', '.join((*SOURCES, 'all'))}")


def _name(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ParamError("must be a model name as models.list shows it")


def _any(value: Any) -> None:
    """Checked by the handler itself (links/spec.py), with messages that name the inner field."""


@dataclass(frozen=True)
class MethodSpec:
    """A method's handler (an Agent method name, or a daemon stream) and its parameter checks."""
    handler: str  # name of the Agent method (or a daemon stream) that serves it
    required: dict[str, Callable[[Any], None]] = field(default_factory=dict)
    optional: dict[str, Callable[[Any], None]] = field(default_factory=dict)

    def check(self, params: dict) -> None:
        """Raise ParamError naming the first unknown, missing or malformed parameter; optional ones that
        are None are not checked."""
        unknown = sorted(set(params) - set(self.required) - set(self.optional))
        if unknown:
            allowed = ", ".join(sorted({*self.required, *self.optional})) or "none"
            raise ParamError(f"unknown parameter(s) {', '.join(unknown)} (allowed: {allowed})")
        for name, check in self.required.items():
            if name not in params:
                raise ParamError(f"missing required parameter {name!r}")
            _named(name, check, params[name])
        for name, check in self.optional.items():
            if name in params and params[name] is not None:
                _named(name, check, params[name])


def _named(name: str, check: Callable[[Any], None], value: Any) -> None:
    try:
        check(value)
    except ParamError as exc:
        raise ParamError(f"{name} {exc}") from None


# fresh: with ctx auto, search again instead of reusing a remembered fit.
ENGINE_PARAMS = dict(required={"model": _model},
                     optional={"ctx": _ctx, "engine": _engine, "args": _args, "fresh": _bool})

METHODS: dict[str, MethodSpec] = {
    "status": MethodSpec("status"),
    "engine.start": MethodSpec("engine_start", **ENGINE_PARAMS),
    "engine.swap": MethodSpec("engine_swap", **ENGINE_PARAMS),
    "engine.stop": MethodSpec("engine_stop"),
    "engine.restart": MethodSpec("engine_restart"),
    "engine.api_key": MethodSpec("engine_api_key"),
    "jupyter.token": MethodSpec("jupyter_token"),
    "fit.search": MethodSpec("fit_search", optional={"model": _model, "ctx_max": _positive,
                                                     "cache_type": _cache_type, "fresh": _bool,
                                                     "budget_bytes": _positive, "budgets_mib": _budgets}),
    "models.list": MethodSpec("models_list"),
    "models.delete": MethodSpec("models_delete", required={"name": _name}),
    # RPC cluster links (remote_agent/links/methods.py); links' fields are checked there
    "cluster.link": MethodSpec("cluster_link", required={"links": _any, "known_hosts": _any, "private_key": _any},
                               optional={"wait_s": _positive, "budgets_mib": _any}),
    "cluster.unlink": MethodSpec("cluster_unlink"),
    "cluster.authorize": MethodSpec("cluster_authorize", optional={"public_key": _any}),
    "cluster.direct": MethodSpec("cluster_direct", required={"endpoints": _any}, optional={"budgets_mib": _any}),
    "logs.tail": MethodSpec("logs_tail", optional={"n": _positive_int(MAX_LOG_TAIL), "follow": _bool,
                                                  "source": _source}),
}

Handler = Callable[[dict, Callable[[str, dict], None]], Awaitable[Any]]

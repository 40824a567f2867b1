"""What the agent does differently in an RPC cluster role (engine/roles.py reads the role).

- backend: the engine is ggml-rpc-server (engine/adapters/rpc_server.py) on APP_BIND:APP_PORT, with
  its tensor cache under the state dir. No model, no fit, no context.
- server: the engine is llama-server with `--rpc` over APP_RPC_BACKENDS, `--repeat-penalty` when
  APP_REPEAT_PENALTY is set, and gpu_layers from GPU_LAYERS/APP_GPU_LAYERS (99). Every launch is
  checked first by a BackendGuard (engine/backends.py), and a LivenessWatch (engine/liveness.py)
  watches the llama-server that serves. `ctx auto` is resolved in the same preflight, while the
  backends are idle: the largest context that fits every device (fit/devices.py), launched with
  `--fit off` and the split as an explicit `-ts`.
- none: no engine at all; sshd and the agent idle.

Requests that make no sense in a role are refused with RoleRefused (code not_in_role), which says
what the role does instead.

Direct endpoints (`cluster.direct`, a Runpod Instant Cluster with `podtui cluster launch --instant
--direct`): the backends' overlay addresses are known only from the Runpod API (PodCluster.ip), not at
boot, so podtui sends them over its verified channel. They replace the server's RPC endpoints, are kept
in <state>/rpc-direct.json (a daemon restart keeps them) and llama-server restarts on them. Every launch
takes its `--rpc` from the endpoints of that moment (preflight), so a config saved earlier follows, and a
split that `ctx auto` fitted to the old endpoints or budgets is fitted again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from pathlib import Path

from remote_agent.engine.adapters.base import EngineConfig, EngineFailure, NothingFits
from remote_agent.engine.adapters.rpc_server import NAME as RPC_SERVER, cache_env
from remote_agent.engine.backends import BackendGuard
from remote_agent.engine.fit_launch import FIT_ERROR
from remote_agent.engine.roles import BACKEND, ENGINE, NONE, SERVER, ClusterSettings, RoleError, parse_backends
from remote_agent.engine.rpc_build import list_rpc_devices, llama_build, rpc_banner
from remote_agent.fit.agent_fit import FitTarget, run_config
from remote_agent.fit.devices import FitParamsError, fit_devices
from remote_agent.fit.estimate import EstimateError
from remote_agent.fit.gguf_meta import GGUFFormatError, read_header
from remote_agent.protocol import WireError

log = logging.getLogger("remote_agent.cluster")
DIRECT_FILE = "rpc-direct.json"  # the server's direct endpoints from cluster.direct (no secrets)
MARGIN_MIB = 1024  # llama.cpp's default fit target per device (-fitt), kept free when no budget is given

NOT_IN_ROLE = "not_in_role"
BACKEND_WARNING = ("ggml-rpc-server has no authentication: whoever reaches {where} can run code in this pod; "
                   "it listens on {bind} only")
_REFUSALS = {
    NONE: "this pod runs APP_MODE=none: sshd and the agent, no engine; unset APP_MODE (a single-pod engine) or "
          "set APP_MODE=server or backend, then restart the pod",
    BACKEND: "this pod is an RPC backend (APP_MODE=backend): it lends its device to a llama-server on the server "
             "pod and serves no model itself; engine.restart restarts its ggml-rpc-server",
}


class RoleRefused(WireError):
    """A request this role does not serve (code not_in_role); the message says what the role does."""

    def __init__(self, role: str) -> None:
        super().__init__(NOT_IN_ROLE, _REFUSALS.get(role, f"this pod's role ({role}) does not serve this request"))


class ClusterRole:
    """One daemon's cluster role: settings (ClusterSettings), the engine bin dir and the state dir;
    the server's BackendGuard (handshake deadline timeout_s, poll_s while paused)."""

    def __init__(self, settings: ClusterSettings, bin_dir: Path | None, state_dir: Path, *,
                 timeout_s: float = 5.0, poll_s: float = 2.0) -> None:
        self.role = settings.role
        self.bin_dir = bin_dir
        self.state_dir = Path(state_dir)
        self.direct_budgets_mib: tuple[int, ...] | None = None
        self._fit_request = None  # the last `ctx auto` this server resolved (FitRequest), for a refit
        self._refit = False  # the endpoints or budgets changed since: the next launch fits again
        self.env_backends = settings.backends  # APP_RPC_BACKENDS's, before any cluster.direct
        self.settings = self._with_saved_direct(settings)
        self.guard = (BackendGuard(self.settings.backends, None, None, timeout_s=timeout_s, poll_s=poll_s)
                      if self.role == SERVER else None)
        self._facts_read = False
        self.last_fit: dict | None = None  # the server's last fit across devices (fit/devices.DeviceFit)
        # MiB per RPC device from the backends' APP_MEM, passed in by cluster.link (links/methods.py)
        self.link_budgets_mib: tuple[int, ...] | None = None

    def _with_saved_direct(self, settings: ClusterSettings) -> ClusterSettings:
        """settings with the endpoints cluster.direct last set (server role), when they were kept."""
        path = self.state_dir / DIRECT_FILE
        if self.role != SERVER or not path.exists():
            return settings
        try:
            data = json.loads(path.read_text())
            endpoints = parse_backends(",".join(data["endpoints"]))
            budgets = data.get("budgets_mib")
        except (OSError, ValueError, TypeError, KeyError, RoleError) as exc:
            log.warning("ignoring %s (%s); the backends are APP_RPC_BACKENDS's", path, exc)
            return settings
        log.info("direct RPC endpoints from %s: %s", path, ",".join(map(str, endpoints)))
        self.direct_budgets_mib = tuple(budgets) if budgets else None
        return replace(settings, backends=endpoints)

    def set_direct(self, endpoints: list[str], budgets_mib: list[int] | None = None) -> tuple[str, ...]:
        """Replace the server's RPC endpoints with endpoints ("host:port", in --rpc order; a Runpod Instant
        Cluster's overlay addresses) and keep them in the state dir. budgets_mib: MiB per RPC device for
        the fit, or None. Returns the endpoints now used. Raises RoleError (a bad endpoint), RoleRefused
        off the server role, OSError when the file cannot be written. The caller restarts llama-server."""
        self.refuse(BACKEND, NONE, ENGINE)
        backends = parse_backends(",".join(endpoints))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / DIRECT_FILE).write_text(json.dumps({"endpoints": [str(b) for b in backends],
                                                              "budgets_mib": budgets_mib}))
        self._use(backends, tuple(budgets_mib) if budgets_mib else None)
        return tuple(str(b) for b in backends)

    def clear_direct(self) -> None:
        """Back to APP_RPC_BACKENDS (the environment's endpoints); the kept file is deleted."""
        self.refuse(BACKEND, NONE, ENGINE)
        (self.state_dir / DIRECT_FILE).unlink(missing_ok=True)
        self._use(self.env_backends, None)

    def _use(self, backends: tuple, budgets: tuple[int, ...] | None) -> None:
        self.direct_budgets_mib = budgets
        self._refit = True
        self.settings = replace(self.settings, backends=backends)
        self.guard.backends = backends
        self.guard.last.clear()
        log.info("RPC endpoints now: %s", self.settings.rpc_list)

    @property
    def is_cluster(self) -> bool:
        """Whether APP_MODE set a cluster role (backend, server or none)."""
        return self.role != ENGINE

    def refuse(self, *roles: str) -> None:
        """Raise RoleRefused when this daemon's role is one of roles."""
        if self.role in roles:
            raise RoleRefused(self.role)

    def backend_config(self, args: tuple[str, ...]) -> EngineConfig:
        """The backend's engine: ggml-rpc-server on APP_BIND:APP_PORT with ARGS and its cache dir."""
        s = self.settings
        return EngineConfig(engine=RPC_SERVER, model="", model_path="", port=s.port, bind=s.bind, args=tuple(args),
                            env=cache_env(self.state_dir))

    def server_args(self) -> tuple[str, ...]:
        """llama-server flags of the server role: --rpc, and --repeat-penalty when APP_REPEAT_PENALTY is set."""
        s = self.settings
        penalty = ("--repeat-penalty", f"{s.repeat_penalty:g}") if s.repeat_penalty is not None else ()
        return ("--rpc", s.rpc_list, *penalty)

    async def preflight(self, config: EngineConfig) -> EngineConfig:
        """The server's check before each launch (BackendGuard.preflight, once this build's facts are
        read), then a pending `ctx auto` resolved across the devices. Returns the config to launch.
        Raises PausedUntil (a backend), NothingFits, EngineFailure fit_error."""
        # Taken at the start: a cluster.direct that lands while this launch awaits the handshake sets it
        # again for the next launch (which it triggers) instead of being cleared by this one.
        refit, self._refit = self._refit, False
        try:
            await self.read_facts()
            config = self.with_current_rpc(config)
            if refit and config.fit is None and config.fit_args and self._fit_request is not None:
                # a split fitted to other endpoints or budgets: `ctx auto` again
                config = replace(config, fit=self._fit_request, ctx=None, fit_args=())
            await self.guard.preflight(config)
            return config if config.fit is None else await self.fit(config)
        except BaseException:
            self._refit = self._refit or refit   # not launched: the next try fits again
            raise

    def with_current_rpc(self, config: EngineConfig) -> EngineConfig:
        """config with its `--rpc` value set to the endpoints of now (cluster.direct may have changed them)."""
        args = list(config.args)
        for index, arg in enumerate(args[:-1]):
            if arg == "--rpc" and args[index + 1] != self.settings.rpc_list:
                args[index + 1] = self.settings.rpc_list
                return replace(config, args=tuple(args))
        return config

    async def fit(self, config: EngineConfig) -> EngineConfig:
        """config with its pending FitRequest resolved: the largest ctx that fits every RPC device within
        its budget (the request's, else free memory less MARGIN_MIB), `--fit off` and `-ts` pinned."""
        request, s = config.fit, self.settings
        self._fit_request = request
        model = Path(config.model_path)
        try:
            memory = tuple(run_config(FitTarget(model, config.engine, config.args, config.parallel, config.batch_size,
                                                config.ubatch_size), cache_type=request.cache_type).engine_args())
            budgets = list(request.device_budgets_mib or self.direct_budgets_mib or self.link_budgets_mib
                           or await self._free_budgets())
            trained = read_header(model).arch_value("context_length")
            result = await asyncio.to_thread(
                fit_devices, Path(self.bin_dir or "") / "llama-fit-params", model, [str(b) for b in s.backends],
                budgets, gpu_layers=config.gpu_layers if config.gpu_layers is not None else 99,
                ctx_cap=request.ctx_cap, trained_ctx=trained, settings=memory, state_dir=self.state_dir,
                fresh=request.fresh)
        except (FitParamsError, EstimateError, GGUFFormatError, OSError, ValueError) as exc:
            raise EngineFailure(FIT_ERROR, f"ctx auto across the backends' devices could not run: {exc}; pass a "
                                "number as ctx, or budgets_mib to fit.search") from None
        self.last_fit = result.to_dict()
        if result.status != "fits":
            raise NothingFits(result.message)
        split = ",".join(map(str, result.tensor_split))
        return replace(config, fit=None, ctx=result.ctx, fit_args=("--fit", "off", "-ts", split, *memory))

    async def _free_budgets(self) -> list[int]:
        devices = await asyncio.to_thread(list_rpc_devices, self.bin_dir, self.settings.rpc_list)
        if not devices:
            raise ValueError("llama-server --list-devices showed no RPC device")
        return [max(1, device.free_mib - MARGIN_MIB) for device in devices]

    async def read_facts(self) -> None:
        """This pod's llama.cpp build and RPC protocol, for the server's comparison (once; in a thread)."""
        if self.guard is not None and not self._facts_read:
            banner = await asyncio.to_thread(rpc_banner, self.bin_dir)
            self.guard.client = banner.protocol
            self.guard.build = await asyncio.to_thread(llama_build, self.bin_dir)
            self._facts_read = True

    async def status(self, engine_info: dict | None, liveness: dict | None) -> dict:
        """status's "cluster" block for this role (see the README's cluster section)."""
        s = self.settings
        build = await asyncio.to_thread(llama_build, self.bin_dir)
        if self.role == BACKEND:
            info = engine_info or {}
            where = f"{s.bind}:{s.port}"
            return {"role": BACKEND, "bind": s.bind, "port": s.port, "build": build,
                    "protocol": info.get("protocol"), "devices": info.get("devices") or [],
                    "memory_budget_mib": s.memory_budget_mib,
                    "memory_budgets_mib": list(s.memory_budgets_mib or
                                               ((s.memory_budget_mib,) if s.memory_budget_mib else ())),
                    "rank": s.rank, "num_nodes": s.num_nodes,
                    "cache_dir": str(self.state_dir / "rpc-cache" / "rpc"),
                    "warning": BACKEND_WARNING.format(where=where, bind=s.bind)}
        if self.role == SERVER:
            await self.read_facts()
            return {"role": SERVER, "build": build,
                    "protocol": str(self.guard.client) if self.guard.client else None,
                    "backends": self.guard.snapshot(), "gpu_layers": s.gpu_layers,
                    "repeat_penalty": s.repeat_penalty, "liveness": liveness, "rank": s.rank,
                    "num_nodes": s.num_nodes, "direct": (self.state_dir / DIRECT_FILE).exists()}
        return {"role": self.role}

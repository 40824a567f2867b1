"""The agent's methods: status, engine start/stop/swap/restart, models, logs. The daemon module owns
the socket; this module owns what each request does. In an RPC cluster role (APP_MODE) the engine is
the role's (engine/cluster.py), and requests the role does not serve are refused."""

from __future__ import annotations

import asyncio
import logging
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from remote_agent import __version__, engine_key, jupyter
from remote_agent.engine.adapters import adapter_for
from remote_agent.engine.adapters.base import EngineConfig, EngineFailure
from remote_agent.engine.cluster import ClusterRole
from remote_agent.engine.ctx import FitRequest, choose_ctx, parse_ctx
from remote_agent.engine.fit_launch import fit_settings
from remote_agent.engine.logbuf import SOURCES, LogBuffer
from remote_agent.engine.orphan import EngineRecordFile
from remote_agent.engine.roles import BACKEND, ENGINE, NONE, SERVER
from remote_agent.engine.supervisor import EngineSupervisor
from remote_agent.fit.agent_fit import AgentFitter, FitSettings
from remote_agent.fit.budget import BudgetError, EngineOverhead
from remote_agent.links.methods import LinkMethods
from remote_agent.links.supervisor import LinkSet
from remote_agent.idle import DownloadProbe, EngineProbe, IdleWatcher
from remote_agent.protocol import INTERNAL, WireError
from remote_agent.server.direct import DirectMethods
from remote_agent.server.settings import AgentSettings
from remote_agent.server.state import StateStore
from remote_agent.server.status import cached_gpus, disk_free_bytes

Emit = Callable[[str, dict], None]
PROGRESS_INTERVAL_S = 0.1  # download progress is merged to at most ten events a second
log = logging.getLogger("remote_agent.agent")


class RequestError(WireError):
    """A request the agent refuses (no_model, no_budget, in_use); `code` goes on the wire."""


class Agent(LinkMethods, DirectMethods):
    """What each request does: the METHODS handlers, `await agent.<handler>(params, emit)` with params
    already checked and emit(kind, data) sending stream events. Engine changes go through the
    supervisor. Handlers raise WireError subclasses (RequestError, ModelError, EngineFailure), which
    the daemon answers as they are."""

    def __init__(self, settings: AgentSettings, logbuf: LogBuffer) -> None:
        self.settings = settings
        self.logbuf = logbuf
        self.state = StateStore(settings.state_dir)
        # The user's key or opt-out, else the one kept in the state dir (generated once); the
        # daemon logs which once its logging is set up.
        self.api_key = engine_key.resolve(settings.user_api_key, settings.state_dir)
        self.role = ClusterRole(settings.cluster, settings.bin_dir, settings.state_dir,
                                timeout_s=settings.backend_timeout_s, poll_s=settings.backend_poll_s)
        self.fitter = AgentFitter(FitSettings(
            settings.bin_dir, settings.state_dir, settings.memory_budget, settings.address_space_limit,
            EngineOverhead(*settings.engine_overhead)))
        self.supervisor = EngineSupervisor(
            logbuf, bin_dir=settings.bin_dir, address_space_limit=settings.address_space_limit,
            timings=settings.timings, on_ready=self._remember_good, on_stopped=self._remember_stopped,
            stack_limit=settings.engine_stack_limit, fitter=self.fitter, api_key=self.api_key,
            # The running engine, recorded in the state dir: should this daemon die, the next one
            # stops the engine it left holding the port and the memory (engine/orphan.py).
            engine_record=EngineRecordFile(settings.state_dir),
            preflight=self.role.preflight if self.role.role == SERVER else None)
        self.activity: IdleWatcher | None = None  # set by start_activity_clock
        self.liveness = None  # an RPC server's LivenessWatch, set by start_watchers
        self.links = LinkSet(settings.state_dir)  # an RPC server's SSH links to its backends (links/)
        if self.role.guard is not None:   # a backend down behind an up link is named by its link
            self.role.guard.link_for = lambda endpoint: next(
                (link.spec.name for link in self.links.links if link.spec.endpoint == endpoint), None)

    def start_activity_clock(self, done: threading.Event) -> None:
        """Measure idleness (no engine request, no download) for `status.idle_s`, in a thread: the
        probes do blocking HTTP and directory walks that must not hold up the daemon's loop."""
        # A backend's engine port is ggml-rpc-server's: an HTTP probe there would take its one client slot.
        engine = [] if self.role.role in (BACKEND, NONE) else [
            EngineProbe(self.settings.port, api_key=lambda: self.supervisor.engine_key.value)]

        def run() -> None:
            self.activity = IdleWatcher.tracking([*engine, DownloadProbe(self.settings.models_dir)],
                                                 poll_s=self.settings.idle_poll_s)
            self.activity.run(done)

        threading.Thread(target=run, name="activity-clock", daemon=True).start()

    def start_watchers(self) -> list[asyncio.Task]:
        """The server role's liveness check of llama-server (engine/liveness.py), as a task; none in other roles."""
        if self.role.role != SERVER:
            return []
        from remote_agent.engine.liveness import LivenessWatch  # loads httpx: the server role only
        interval, deadline, idle_probe = self.settings.liveness
        self.liveness = LivenessWatch(lambda: self.supervisor.ready_engine, self.supervisor.report_hung,
                                      interval_s=interval, deadline_s=deadline, idle_probe_s=idle_probe)
        return [asyncio.create_task(self.liveness.run(), name="liveness"),
                asyncio.create_task(self.restore_links(), name="links-restore")]

    # ---- persistence -------------------------------------------------------------------------
    def _remember_good(self, config: EngineConfig) -> None:
        if self.role.role == BACKEND:  # its engine follows from the environment alone
            return
        self.state.save({"last_good": config.to_dict(), "running": True, "boot_model": self.settings.model,
                         "role": self.role.role})
        try:
            from remote_agent.models import store
            store.mark_used(Path(config.model_path))
        except Exception as exc:  # a usage timestamp is not worth failing a start over
            log.warning("could not record last use of %s: %s", config.model_path, exc)

    def _remember_stopped(self) -> None:
        saved = self.state.load() or {}
        self.state.save({**saved, "running": False, "boot_model": self.settings.model, "role": self.role.role})

    async def boot(self) -> None:
        """At daemon start: restore the last good config, or start MODEL. A changed MODEL in the pod's
        environment means the person asked for another model, so it wins over the saved one. A backend
        starts its ggml-rpc-server; role none starts nothing; a config saved in another role (or with
        other backends) is not restored."""
        for note in self.settings.cluster.notes:
            log.info(note)
        if self.role.role == NONE:
            log.info("APP_MODE=none: no engine runs here; sshd and the agent only")
            return
        if self.role.role == BACKEND:
            log.info("APP_MODE=backend: ggml-rpc-server on %s:%d", self.settings.cluster.bind,
                     self.settings.cluster.port)
            await self.supervisor.autostart(self.role.backend_config(self.settings.args))
            return
        saved = self.state.load()
        same_role = saved is not None and saved.get("role", ENGINE) == self.role.role and (
            self.role.role != SERVER or self.role.server_args()[1] in saved.get("last_good", {}).get("args", []))
        if saved and saved.get("last_good") and saved.get("boot_model") == self.settings.model and same_role:
            if not saved.get("running", True):
                log.info("the engine was stopped on purpose before the daemon restarted; leaving it stopped")
                return
            config = EngineConfig.from_dict(saved["last_good"])
            log.info("restoring the last good config: %s with %s", config.engine, config.model)
            await self.supervisor.autostart(config)
            return
        if not self.settings.model:
            log.info("no MODEL set and no saved config: waiting for engine.start")
            return
        log.info("starting MODEL=%s", self.settings.model)
        try:
            config = await self.engine_config({"model": self.settings.model}, self._log_boot_progress())
        except WireError as exc:  # ModelError, RequestError
            await self.supervisor.report_failure(EngineFailure(exc.code, exc.message))
            return
        except Exception as exc:
            await self.supervisor.report_failure(EngineFailure(INTERNAL, str(exc)))
            return
        await self.supervisor.autostart(config)

    @staticmethod
    def _log_boot_progress(every_s: float = 10.0) -> Emit:
        """At boot nobody is connected: download progress goes to the agent log (the pod log)."""
        last = [0.0]

        def emit(kind: str, data: dict) -> None:
            now = time.monotonic()
            if kind == "progress" and data.get("phase") == "download" and now - last[0] >= every_s:
                last[0] = now
                total = data.get("total") or 0
                share = f" ({100 * data.get('bytes', 0) / total:.0f}%)" if total else ""
                log.info("downloading %s: %s bytes%s", data.get("file"), data.get("bytes"), share)

        return emit

    # ---- methods -------------------------------------------------------------------------------
    async def status(self, params: dict, emit: Emit) -> dict:
        """`status`: the supervisor's snapshot plus port, models_dir, disk_free_bytes, version, gpus
        ([{"name", "memory_total_mib", "memory_free_mib"}] or None), idle_s (seconds; None until the
        activity clock runs), api_key_required (whether the engine refuses requests without its API
        key; the key itself only through `engine.api_key`) and warnings (sentences: the engine runs
        keyless)."""
        gpus = await asyncio.to_thread(cached_gpus)
        key = self.supervisor.engine_key
        snapshot = self.supervisor.snapshot()
        cluster = {}
        if self.role.is_cluster:
            liveness = self.liveness.snapshot() if self.liveness is not None else None
            cluster = {"cluster": await self.role.status(snapshot.get("engine_info"), liveness)}
            if self.role.role == SERVER:
                self.links.annotate(cluster["cluster"])
            if self.role.role == BACKEND:
                snapshot.update(model=None, model_path=None)
        keyless = self.role.role in (BACKEND, NONE)  # no engine with an HTTP API here
        return {
            **snapshot,
            "port": self.settings.cluster.port if self.role.role == BACKEND else self.settings.port,
            "models_dir": str(self.settings.models_dir),
            "disk_free_bytes": disk_free_bytes(self.settings.models_dir),
            "version": __version__,
            "gpus": gpus,
            # seconds without an engine request or a download; null until the clock runs
            "idle_s": round(self.activity.idle_s) if self.activity is not None else None,
            "api_key_required": key.required and not keyless,
            "warnings": [key.warning] if key.warning and not keyless else [],
            "role": self.role.role,
            # Jupyter (pod mode, JUPYTER=1): boot runs it and writes its state; null when boot never started it
            "jupyter": jupyter.read_state(self.settings.state_dir),
            **cluster,
        }

    async def engine_api_key(self, params: dict, emit: Emit) -> dict:
        """`engine.api_key`: {"api_key": the key the engine requires (null: keyless, or set by ARGS
        through a file the agent cannot read), "source": where it came from (engine_key.EngineKey),
        "required": bool}. Its own method, so the key travels only when someone asks for it — never
        in `status`, which scripts print and poll."""
        key = self.supervisor.engine_key
        return {"api_key": key.value, "source": key.source, "required": key.required}

    async def jupyter_token(self, params: dict, emit: Emit) -> dict:
        """`jupyter.token`: {"token": the token Jupyter requires (null: boot never started Jupyter), "state":
        jupyter.read_state(...) or null}. Its own method, like engine.api_key: never in `status`."""
        state = jupyter.read_state(self.settings.state_dir)
        return {"token": jupyter.read_token(self.settings.state_dir) if state else None, "state": state}

    async def engine_start(self, params: dict, emit: Emit) -> dict:
        """`engine.start`: resolve (maybe download) the model and start it; returns status, plus "fit" when
        ctx was auto. Raises ModelError, RequestError (no_budget), EngineFailure, RoleRefused (backend, none)."""
        self.role.refuse(BACKEND, NONE)
        config = await self.engine_config(params, emit)
        await self.supervisor.start(config, emit)
        return {**await self.status({}, emit), **self._fit_field(config)}

    async def engine_swap(self, params: dict, emit: Emit) -> dict:
        """`engine.swap`: as engine_start, but drains first and rolls back on failure (EngineFailure says
        so); adds swap_s (seconds)."""
        self.role.refuse(BACKEND, NONE)
        started = time.monotonic()
        config = await self.engine_config(params, emit)
        await self.supervisor.swap(config, emit)
        return {**await self.status({}, emit), "swap_s": round(time.monotonic() - started, 3),
                **self._fit_field(config)}

    async def fit_search(self, params: dict, emit: Emit) -> dict:
        """Search the largest ctx for a model (the current one by default) and leave it serving. An RPC
        server fits every device (budgets_mib: MiB per device in --rpc order; default their free memory
        less 1024) and answers fit/devices.DeviceFit's fields. Raises RoleRefused for backend and none."""
        self.role.refuse(BACKEND, NONE)
        current = self.supervisor.config
        cap = params.get("ctx_max")
        if cap is None and isinstance(env := self._env_ctx_number(), int):
            cap = env
        budgets = params.get("budgets_mib")
        request = FitRequest(ctx_cap=cap, fresh=bool(params.get("fresh")), cache_type=params.get("cache_type"),
                             budget_bytes=params.get("budget_bytes"),
                             device_budgets_mib=tuple(budgets) if budgets else None)
        self._check_budget(request)
        if params.get("model") is None and current is not None:
            config = EngineConfig.from_dict({**current.to_dict(), "ctx": None, "fit_args": []})
        else:
            model = params.get("model") or self.settings.model
            if not model:
                raise RequestError("no_model", "fit.search needs a model: pass model, or start one first "
                                   "(engine.start)")
            config = await self.engine_config({"model": model}, emit, fit=request)
        config = replace(config, ctx=None, fit=request)
        await self._check_engine(config)
        started = time.monotonic()
        await self.supervisor.swap(config, emit)
        return {**(self._last_fit() or {}), "model": config.model, "state": self.supervisor.state,
                "search_s": round(time.monotonic() - started, 3)}

    def _last_fit(self) -> dict | None:
        return self.role.last_fit if self.role.role == SERVER else self.supervisor.last_fit

    def _fit_field(self, config: EngineConfig) -> dict:
        return {"fit": self._last_fit()} if config.fit is not None else {}

    def _env_ctx_number(self) -> int | str | None:
        try:
            return parse_ctx(self.settings.env_ctx)
        except ValueError:
            return None

    def _check_budget(self, request: FitRequest) -> None:
        """Before anything is stopped: `auto` needs a budget (a GPU, an explicit one, or the stand-in's);
        an RPC server's budgets are its devices' (fit/devices.py)."""
        if self.role.role == SERVER:
            return
        try:
            self.fitter.budget(request.budget_bytes)
        except BudgetError as exc:
            raise RequestError("no_budget", f"{exc}; or pass a number as ctx") from None

    async def engine_restart(self, params: dict, emit: Emit) -> dict:
        """`engine.restart`: start the role's engine again (a backend's ggml-rpc-server; else the config
        last started or tried); returns status. Raises RequestError no_model when there is none yet,
        RoleRefused for role none, EngineFailure."""
        self.role.refuse(NONE)
        if self.role.role == BACKEND:
            config = self.role.backend_config(self.settings.args)
            await asyncio.to_thread(adapter_for(config.engine).check, config, self.settings.bin_dir)
        else:
            config = self.supervisor.config
            if config is None:
                raise RequestError("no_model", "nothing to restart: no engine was started yet; use engine.start")
        await self.supervisor.start(config, emit)
        return await self.status({}, emit)

    async def engine_stop(self, params: dict, emit: Emit) -> dict:
        """`engine.stop`: stop the engine; returns status."""
        await self.supervisor.stop(emit)
        return await self.status({}, emit)

    async def models_list(self, params: dict, emit: Emit) -> list[dict]:
        """`models.list`: every model in models_dir, as models.store.list_models lists them."""
        from remote_agent.models import store
        return await asyncio.to_thread(store.list_models, self.settings.models_dir)

    async def models_delete(self, params: dict, emit: Emit) -> dict:
        """`models.delete`: delete a model by its models.list name. Raises RequestError in_use while the
        engine serves it, ModelError not_found / bad_ref."""
        from remote_agent.models import store
        name = params["name"]
        serving = self.supervisor.config if self.supervisor.state not in ("stopped",) else None
        serving = serving if serving is not None and serving.model_path else None  # a backend serves no file
        if serving is not None:
            target = store.inside(self.settings.models_dir, name).resolve()
            in_use = {p.resolve() for p in store.split_parts(Path(serving.model_path))}
            if target in in_use:
                raise RequestError("in_use", f"{name} is the engine's model ({serving.model}); swap to another "
                                   "model or stop the engine before deleting it")
        return await asyncio.to_thread(store.delete_model, self.settings.models_dir, name)

    # ---- helpers -------------------------------------------------------------------------------
    async def engine_config(self, params: dict, emit: Emit, fit: FitRequest | None = None) -> EngineConfig:
        """The EngineConfig params ask for, settings filling the rest: the model resolved to a local file
        (maybe downloaded, with progress events), ctx a number, None or a pending FitRequest (auto).
        Raises ModelError, RequestError no_budget (auto without a budget), EngineFailure unsupported
        (a setting the installed engine refuses) or missing_binary."""
        s = self.settings
        engine = params.get("engine") or s.engine
        model_path = await self.resolve(params["model"], emit)
        ctx = fit or choose_ctx(params.get("ctx"), s.env_ctx, fresh=bool(params.get("fresh")))
        fit = ctx if isinstance(ctx, FitRequest) else None
        if fit is not None:
            self._check_budget(fit)  # before anything is stopped
        args = params.get("args")
        if args is None:
            args = s.args
        elif isinstance(args, str):
            args = shlex.split(args)
        if self.role.role == SERVER:
            if engine != "llama-server":
                raise RequestError("not_in_role", f"an RPC cluster's server runs llama-server (the RPC client), "
                                   f"not {engine}; leave engine unset")
            args = (*self.role.server_args(), *args)
        config = EngineConfig(engine=engine, model=params["model"], model_path=str(model_path), port=s.port,
                              ctx=None if fit else ctx,
                              args=tuple(args), gpu_layers=s.gpu_layers, parallel=s.parallel,
                              batch_size=s.batch_size, ubatch_size=s.ubatch_size, max_tokens=s.max_tokens,
                              fit=fit)
        await self._check_engine(config)
        return config

    async def _check_engine(self, config: EngineConfig) -> None:
        """Before anything is stopped: the installed engine must accept config (adapter.check may run
        its binary once, so in a thread), and a fit's cache type must suit the model (fit_launch.fit_settings).
        Raises EngineFailure unsupported / missing_binary / fit_error."""
        await asyncio.to_thread(adapter_for(config.engine).check, config, self.settings.bin_dir)
        if config.fit is not None:   # e.g. a q8_0 cache whose blocks this model's head size cannot fill
            await asyncio.to_thread(fit_settings, config, self.fitter)

    async def resolve(self, text: str, emit: Emit) -> Path:
        """The models package's resolve_model in a worker thread, its progress as events."""
        from remote_agent.models import resolve_model

        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        last = [0.0]

        def on_progress(data: dict) -> None:  # called in the worker thread
            now = time.monotonic()
            final = data.get("total") is not None and data.get("bytes") == data.get("total")
            if final or now - last[0] >= PROGRESS_INTERVAL_S:
                last[0] = now
                loop.call_soon_threadsafe(emit, "progress", dict(data))

        emit("progress", {"phase": "resolve", "model": text})
        try:
            return await asyncio.to_thread(resolve_model, text, self.settings.models_dir, token=self.settings.hf_token,
                                           on_progress=on_progress, cancel=cancel)
        except asyncio.CancelledError:
            cancel.set()  # the download stops between chunks; its partial file is kept for a resume
            raise

    @staticmethod
    def log_sources(source: str) -> frozenset[str]:
        """{source}, or every source for "all"."""
        return frozenset(SOURCES) if source == "all" else frozenset({source})

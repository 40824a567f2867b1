"""`podtui local setup|start|stop|status`: the local pod (remote-agent daemon + engine on this machine)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import click

from podtui.errors import PodtuiError
from podtui.providers.base import DEFAULT_ENGINE_PORT, PodSpec, ProviderError
from podtui.providers.local import LocalProvider
from podtui.services.engine_access import engine_api_key, key_text
from podtui.services import local_setup
from podtui.services.inputs import ctx_option

SETTLED = ("ready", "failed", "paused", "stopped")


@click.group()
def local() -> None:
    """The local pod: this machine's remote-agent daemon and its engine (llama-server by default).

    Its state, socket and log live under podtui's state dir (`podtui locate`). The engine listens
    on 127.0.0.1:PORT, so no tunnel is needed; `podtui agent local …` talks to the daemon. It
    requires the API key shown beside the base URL (any web page could use the port otherwise).
    """


def _api_key(provider: LocalProvider) -> str | None:
    """The key the local engine requires (None: keyless, or the daemon is not running)."""
    if not provider.daemon.running():
        return None
    try:
        client = provider.daemon.client()
    except PodtuiError:
        return None
    try:
        return engine_api_key(client)
    finally:
        client.close()


def _wait_settled(provider: LocalProvider, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status = provider.status()
        if status.get("state") in SETTLED or time.monotonic() >= deadline:
            return status
        time.sleep(0.2)


@local.command()
@click.option("--model", default="", help="MODEL: a GGUF path, org/repo:QUANT, an HF URL … (see README).")
@click.option("--ctx", default=None, help="CTX: context length, or 'auto'.")
@click.option("--engine", type=click.Choice(["llama-server", "koboldcpp"]), default=None)
@click.option("--args", "engine_args", default=None, help="ARGS: extra engine arguments.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help=f"Engine port on 127.0.0.1 (default: the last one, else {DEFAULT_ENGINE_PORT}).")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where models are kept (default: the last one, else <state dir>/local/models).")
@click.option("--engine-bin-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder with llama-server / koboldcpp (default: the last one, else "
                   "$REMOTE_AGENT_ENGINE_BIN_DIR, else `podtui local setup`'s build, else PATH).")
@click.option("--no-api-key", is_flag=True,
              help="Run the engine without an API key for this start (API_KEY=none): any web page open in "
                   "your browser can then use it. Default: a key generated once and kept in the state dir.")
@click.option("--wait", "wait_s", type=float, default=300, show_default=True,
              help="Seconds to wait for the engine to be ready (0: do not wait).")
@click.option("--json", "as_json", is_flag=True)
def start(model: str, ctx: str | None, engine: str | None, engine_args: str | None, port: int | None,
          models_dir: Path | None, engine_bin_dir: Path | None, no_api_key: bool, wait_s: float,
          as_json: bool) -> None:
    """Start the local pod's daemon; with --model it serves that model (else its last one).

    Prints the base URL and the API key a chat client needs."""
    ctx_value = ctx_option(ctx)     # the agent's own rule: a positive number or auto
    ctx = None if ctx_value is None else str(ctx_value)
    provider = LocalProvider()
    if engine_bin_dir is None:
        engine_bin_dir = _default_bin_dir(provider, engine or "llama-server")
    spec = PodSpec(gpu="local", model=model, ctx=ctx, engine=engine, args=engine_args,
                   port=port or provider.daemon.settings().port)
    provider.start(spec, models_dir=str(models_dir.resolve()) if models_dir else None,
                   engine_bin_dir=str(engine_bin_dir.resolve()) if engine_bin_dir else None, port=port,
                   api_key="none" if no_api_key else None)
    status = _wait_settled(provider, wait_s) if wait_s > 0 else provider.status()
    url = f"http://127.0.0.1:{status.get('port')}/v1"
    key = _api_key(provider)
    failed = status.get("state") in ("failed", "paused")
    if as_json:
        click.echo(json.dumps({"status": status, "base_url": url, "api_key": key, "pid": provider.daemon.pid(),
                               "log": str(provider.daemon.log_file)}))
    else:
        click.echo(f"local pod started (pid {provider.daemon.pid()}, log {provider.daemon.log_file})")
        what = (status.get("last_error") or {}).get("kind") if failed else None
        click.echo(f"  engine    {status.get('state')}: "
                   f"{what or status.get('model') or 'no model yet'}{' (see error below)' if failed else ''}")
        click.echo(f"  base URL  {url}")
        click.echo(f"  API key   {key_text(key)}")
        for warning in status.get("warnings") or []:
            click.echo(f"  warning   {warning}", err=True)
    if failed:
        error = status.get("last_error") or {}
        raise ProviderError(f"the local engine {status.get('state')}: {error.get('kind')}: {error.get('message')}",
                            "the daemon keeps running: fix the model or engine and run "
                            "`podtui agent local swap MODEL`, or `podtui local stop`")


def _default_bin_dir(provider: LocalProvider, engine: str) -> Path | None:
    """Where the engine is when --engine-bin-dir is not given: the last start's folder or
    $REMOTE_AGENT_ENGINE_BIN_DIR (None: the daemon uses it), else `local setup`'s build, else PATH
    (None). Raises PodtuiError saying to run `podtui local setup` when there is none."""
    if provider.daemon.settings().engine_bin_dir or os.environ.get("REMOTE_AGENT_ENGINE_BIN_DIR"):
        return None
    built = local_setup.installed_bin_dir()
    if engine == "llama-server" and built is not None:
        return built
    if shutil.which(engine):
        return None
    if engine == "koboldcpp":
        raise PodtuiError("koboldcpp is not installed on this machine",
                          "install its release binary as `koboldcpp` on PATH, or pass --engine-bin-dir; "
                          "`podtui local setup` builds llama-server, the default engine")
    raise PodtuiError("no llama-server on this machine yet",
                      "run `podtui local setup` (builds it from llama.cpp's pinned source, about 7 minutes on "
                      "2 cores, once), or pass --engine-bin-dir with a folder that holds one")


@local.command()
@click.option("--cpu", "backend", flag_value="cpu", help="Build for the CPU even when nvcc is found.")
@click.option("--cuda", "backend", flag_value="cuda", help="Build with CUDA (needs nvcc and the CUDA toolkit).")
@click.option("--source", type=click.Path(exists=True, path_type=Path), default=None,
              help=f"The {local_setup.SDIST} {local_setup.SDIST_VERSION} sdist, or an unpacked llama.cpp tree, "
                   "to build instead of fetching it with pip.")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build here instead of podtui's cache dir (`podtui locate`).")
@click.option("--jobs", type=click.IntRange(1, 256), default=None, help="Parallel compile jobs (default: all cores).")
@click.option("--json", "as_json", is_flag=True)
def setup(backend: str | None, source: Path | None, root: Path | None, jobs: int | None, as_json: bool) -> None:
    """Build llama-server for this machine, for `podtui local start`.

    The source is llama.cpp at the tag the pod image carries (b11312), fetched with pip as the
    llama-cpp-python 0.3.36 sdist and checked against its sha256. It builds for the CPU, or with
    CUDA when nvcc is found (--cpu / --cuda to choose). Needs CMake and a C++ compiler; takes
    about 7 minutes on 2 cores, once: the build is cached and a second setup returns at once.
    Prints the folder that holds llama-server (`local start` uses it by default)."""
    def progress(line: str) -> None:
        click.echo(json.dumps({"event": "progress", "data": {"message": line}}) if as_json else line, err=True)

    result = local_setup.setup(backend or "auto", root=root, source=source, jobs=jobs, on_progress=progress)
    if as_json:
        click.echo(json.dumps(result.as_dict()))
        return
    verb = f"built in {result.seconds:.0f} s" if result.built else "already built"
    click.echo(f"llama-server ({result.backend.upper()}, llama.cpp {local_setup.LLAMA_CPP_TAG}) {verb}: "
               f"{result.bin_dir}")
    click.echo("next: podtui local start --model MODEL")


@local.command()
@click.option("--json", "as_json", is_flag=True)
def stop(as_json: bool) -> None:
    """Stop the local daemon (it stops its engine first; its last good config stays saved)."""
    provider = LocalProvider()
    pid = provider.daemon.stop()
    if as_json:
        click.echo(json.dumps({"stopped": pid is not None, "pid": pid}))
    else:
        click.echo(f"local pod stopped (pid {pid})" if pid else "the local pod was not running")


@local.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """The local pod's status (STOPPED when its daemon is not running), its base URL and API key."""
    provider = LocalProvider()
    pod = provider.get_pod()
    key = _api_key(provider) if pod.running else None
    if as_json:
        click.echo(json.dumps({**pod.as_dict(), "base_url": provider.base_url(pod), "api_key": key,
                               "socket": str(provider.daemon.socket), "log": str(provider.daemon.log_file)}))
        return
    click.echo(f"local pod: {pod.status} ({pod.detail})")
    if pod.running:
        click.echo(f"  base URL  {provider.base_url(pod)}")
        click.echo(f"  API key   {key_text(key)}")


COMMANDS = [local]

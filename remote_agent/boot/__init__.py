"""`remote-agent boot`, the image's entrypoint: host keys, printed fingerprints, sshd, the daemon.

Order: host keys on the volume (generated only when missing) → PUBLIC_KEY into authorized_keys →
sshd (config checked with `sshd -t` first) → the printed host-key block (contract A) and the exact
`podtui tunnel` / `ssh -N -L` commands → the agent daemon → Jupyter on 127.0.0.1 when JUPYTER=1 or
JUPYTER_PASSWORD asks for it (boot/notebook.py, remote_agent/jupyter.py) → the idle auto-stop watcher.
Then it supervises: SIGTERM (Runpod stop) stops the daemon and sshd and exits 0.

Never crash-loop (seed 000 Q6): Runpod restarts a container that exits, which hides why it failed.
On an unrecoverable error boot prints the problem and what to do, then stays up — sshd keeps
running when it was started, so you can log in and look — until the pod is stopped.
`--exit-on-error` exits 1 instead (tests, local use). `--dry-run`/DRYRUN prints every step and
changes nothing.

MODE_TO_RUN=serverless (boot/serverless.py) runs only the daemon and the serverless worker. There a
broken worker exits instead of staying up: nobody can log in to a serverless worker, and one that
stays up takes no jobs while it is billed; Runpod marks a worker that keeps exiting unhealthy, which
`podtui endpoints` shows. An engine that fails is not such a case: the worker serves each job its
failure (the daemon pauses the engine instead of crash-looping, as in a pod). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import threading

from remote_agent import __version__
from remote_agent.boot import serverless
from remote_agent.boot.config import (
    BootConfig,
    BootConfigError,
    add_boot_arguments,
    config_from,
    mode_from,
    truthy,
)
from remote_agent.boot.keys import ensure_host_keys, install_public_keys
from remote_agent.boot.notebook import start_jupyter
from remote_agent.boot.steps import (
    BootError,
    Reporter,
    prepare_engine_key,
    print_connect_info,
    start_daemon,
    start_sshd,
)
from remote_agent.child_env import secret_values
from remote_agent.engine_key import EngineKey
from remote_agent.idle import (
    DownloadProbe,
    EngineProbe,
    IdleWatcher,
    SshSessionProbe,
    stop_pod,
)
from remote_agent.jupyter import JupyterSupervisor
from remote_agent.procgroup import terminate_popen

SUPERVISE_POLL_S = 0.5
STOP_GRACE_S = 10.0  # the daemon stops its engine within this (its own stop grace is shorter)
WARN_AHEAD_UNITS = 5  # warn 5 minutes (units) before the idle stop


class Boot:
    def __init__(self, cfg: BootConfig, rep: Reporter) -> None:
        self.cfg = cfg
        self.rep = rep
        self.shutdown = threading.Event()
        self.sshd: subprocess.Popen | None = None
        self.daemon: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None  # serverless mode: the SDK job loop
        self.idle_thread: threading.Thread | None = None
        self.engine_key: EngineKey | None = None  # the key the engine MODEL starts with requires
        self.jupyter: JupyterSupervisor | None = None  # pod mode with JUPYTER=1 / JUPYTER_PASSWORD

    # -- steps --
    def start(self) -> None:
        cfg, rep = self.cfg, self.rep
        rep.step(f"remote-agent {__version__} boot{' (dry run: nothing is changed)' if cfg.dry_run else ''}"
                 f"; {'worker' if cfg.serverless else 'pod'} {cfg.pod_id}")
        if cfg.serverless:
            return self.start_serverless()
        if cfg.env.get("RUNPOD_WEBHOOK_GET_JOB"):  # only Runpod's serverless workers have a job queue
            rep.warn("this container is a Runpod serverless worker (RUNPOD_WEBHOOK_GET_JOB is set) but "
                     "MODE_TO_RUN is not serverless: it will take no job; set MODE_TO_RUN=serverless on the endpoint")
        keys = ensure_host_keys(cfg, rep)
        install_public_keys(cfg, rep)
        self.sshd = start_sshd(cfg, rep)
        print_connect_info(cfg, rep, keys)
        self.engine_key = prepare_engine_key(cfg, rep)  # before the daemon, which reads the same file
        if cfg.role_note:   # an RPC cluster role (APP_MODE; with rank, the one NODE_RANK chose)
            rep.step(cfg.role_note)
        self.daemon = start_daemon(cfg, rep)
        self.jupyter = start_jupyter(cfg, rep, self.shutdown)
        self.start_idle_watcher()

    def start_serverless(self) -> None:
        """The daemon (engine slots matching the concurrency), then the worker; see boot/serverless.py."""
        cfg, rep = self.cfg, self.rep
        serverless.describe(cfg, rep)
        self.engine_key = prepare_engine_key(cfg, rep)
        self.daemon = start_daemon(cfg, rep, serverless.engine_environment(cfg, rep))
        self.worker = serverless.start_worker(cfg, rep)

    def start_idle_watcher(self) -> None:
        cfg, rep = self.cfg, self.rep
        if cfg.idle_stop_minutes is None:
            rep.step("idle auto-stop is off (set IDLE_STOP_MINUTES to stop an unused pod)")
            return
        missing = [n for n, v in (("RUNPOD_POD_ID", cfg.on_runpod), ("RUNPOD_API_KEY", cfg.runpod_api_key)) if not v]
        if missing:
            rep.warn(f"IDLE_STOP_MINUTES is set but {' and '.join(missing)} is not: idle auto-stop "
                     "is OFF (Runpod injects both into its pods; outside Runpod stop the host yourself)")
            return
        unit = cfg.idle_unit_s
        limit_s = cfg.idle_stop_minutes * unit
        if cfg.dry_run:
            rep.would(f"stop this pod through POST {cfg.runpod_api_url}/v2/pods/{cfg.pod_id}/action "
                      f"after {cfg.idle_stop_minutes:g} idle minute(s)")
            return
        # No engine probe in APP_MODE backend / none: HTTP sent to ggml-rpc-server can kill it.
        engine = [EngineProbe(cfg.engine_port, api_key=lambda: self.engine_key.value if self.engine_key else None)]
        watcher = IdleWatcher(
            limit_s,
            [*(engine if cfg.engine_http else []), SshSessionProbe(cfg.sshd_port), DownloadProbe(cfg.models_dir)],
            stop=lambda: stop_pod(cfg.runpod_api_url, cfg.pod_id, cfg.runpod_api_key or ""),
            log=rep.raw,
            warn_ahead_s=WARN_AHEAD_UNITS * unit,
            poll_s=min(15.0, max(0.05, unit / 4)),
            retry_s=unit,
        )
        rep.step(f"idle auto-stop is on: this pod stops itself after {cfg.idle_stop_minutes:g} "
                 "minute(s) without engine requests, SSH sessions or downloads")
        self.idle_thread = threading.Thread(target=watcher.run, args=(self.shutdown,),
                                            name="idle-watcher", daemon=True)
        self.idle_thread.start()

    # -- lifetime --
    def supervise(self) -> BootError | None:
        """Wait until shutdown (→ None) or a child dies (→ the error to report). A serverless worker that
        ends by itself with status 0 (the SDK stopped it) is a shutdown too."""
        while not self.shutdown.wait(SUPERVISE_POLL_S):
            if self.worker is not None and self.worker.poll() is not None:
                if self.worker.returncode == 0:
                    self.rep.step("the serverless worker finished; stopping the daemon")
                    return None
                return BootError(f"the serverless worker exited with code {self.worker.returncode}",
                                 "its lines above say why; fix the endpoint's settings and update the endpoint "
                                 "(this worker exits so that Runpod replaces it)")
            if self.sshd is not None and self.sshd.poll() is not None:
                return BootError(f"sshd exited with code {self.sshd.returncode}; nobody can log in",
                                 "read sshd's lines above; stop the pod, fix the cause, start it again")
            if self.daemon is not None and self.daemon.poll() is not None and self.cfg.serverless:
                return BootError(f"the agent daemon exited with code {self.daemon.returncode}",
                                 "its lines above say why; this worker exits so that Runpod replaces it")
            if self.daemon is not None and self.daemon.poll() is not None:
                return BootError(
                    f"the agent daemon exited with code {self.daemon.returncode}",
                    "sshd is still up: log in with the ssh command above and run "
                    "`remote-agent daemon` by hand to see why; it is not restarted automatically "
                    "so the cause stays visible; stop the pod when done",
                )
        return None

    def hold(self) -> None:
        self.rep.step("staying up so you can log in and look (an exiting container would be "
                      "restarted by Runpod in a loop); stop the pod when you are done")
        self.shutdown.wait()

    def stop_children(self) -> None:
        self.shutdown.set()
        if self.jupyter is not None:
            self.jupyter.stop_for_exit()
        # The worker first: it finishes the jobs in flight (the SDK's SIGTERM drain) while the engine serves.
        for child in (self.worker, self.daemon, self.sshd):  # each leads its own group (start_new_session)
            if child is not None:
                terminate_popen(child, STOP_GRACE_S)

    def report(self, error: BootError) -> None:
        self.rep.raw(f"[boot] ERROR: {error.problem}")
        self.rep.raw(f"[boot] what to do: {error.fix}")


def run(cfg: BootConfig, rep: Reporter) -> int:
    boot = Boot(cfg, rep)

    def on_signal(signum, _frame) -> None:
        rep.step(f"received {signal.Signals(signum).name}: stopping "
                 f"{'the worker and the daemon' if cfg.serverless else 'the daemon and sshd'}")
        boot.shutdown.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        boot.start()
    except BootError as error:
        boot.report(error)
        return finish_failed(boot)
    if cfg.dry_run:
        rep.step("dry run complete: nothing was changed")
        if cfg.dry_run_from_env and not cfg.exit_on_error:
            boot.hold()  # DRYRUN in a pod: exiting would make Runpod restart it over and over
        return 0
    error = boot.supervise()
    if error is None:
        boot.stop_children()
        return 0
    boot.report(error)
    return finish_failed(boot)


def finish_failed(boot: Boot) -> int:
    if boot.cfg.exit_on_error or boot.cfg.serverless:
        boot.stop_children()
        return 1
    boot.hold()
    boot.stop_children()
    return 1


def main_from_args(args: argparse.Namespace) -> int:
    """Entry from cli.py: build the configuration, report bad input clearly, run."""
    try:
        cfg = config_from(args)
    except BootConfigError as exc:
        rep = Reporter(secret_values())
        rep.raw(f"[boot] ERROR: {exc}")
        if (args.exit_on_error or args.dry_run or truthy(os.environ.get("REMOTE_AGENT_BOOT_EXIT_ON_ERROR"))
                or _serverless_env()):
            return 2
        rep.step("staying up so the pod does not restart in a loop; fix the variable in the "
                 "pod's settings and restart it")
        threading.Event().wait()
        return 2
    return run(cfg, Reporter(cfg.secrets))


def _serverless_env() -> bool:
    """Whether this is (meant to be) a serverless worker: MODE_TO_RUN says so, or Runpod gave it a job
    queue (RUNPOD_WEBHOOK_GET_JOB) — then even a misspelt MODE_TO_RUN must not hold a billed worker."""
    if os.environ.get("RUNPOD_WEBHOOK_GET_JOB"):
        return True
    try:
        return mode_from(dict(os.environ)) == "serverless"
    except BootConfigError:
        return False


def main(argv: list[str] | None = None) -> None:
    """`python -m remote_agent.boot` (same as `remote-agent boot`; see boot/__main__.py)."""
    parser = argparse.ArgumentParser(prog="remote-agent boot")
    add_boot_arguments(parser)
    raise SystemExit(main_from_args(parser.parse_args(argv)))

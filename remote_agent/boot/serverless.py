"""Boot's steps in serverless mode (MODE_TO_RUN=serverless): the daemon and the worker, nothing else.

What runs: the agent daemon, supervising the engine exactly as in a pod (the same classification,
restarts and pause instead of a crash loop), and `remote-agent serverless-worker`, which waits for
the engine and then runs Runpod's SDK job loop (remote_agent/serverless). Concurrency N
(MAX_CONCURRENCY, else CONCURRENCY_MODIFIER, else 1) sizes both sides: the SDK takes N jobs at once,
and the engine gets N slots — llama-server `--parallel N` through PARALLEL (which splits CTX
between the slots), koboldcpp `--multiuser N` in ARGS. koboldcpp 1.76 has no parallel decoding:
`--multiuser N` (N > 1) lets N requests in, generates one at a time and queues the others
(koboldcpp.py: `multiuserlimit = muint-1`, then `modelbusy.acquire(blocking=True)`; with 1 it
would queue up to 6), so there N jobs overlap only in waiting. A PARALLEL or --multiuser the user
set is kept, with a warning when it differs from N.

What does not run, and why:
- sshd, host keys, authorized_keys, the printed block: a queue worker has no public IP or TCP port
  for anyone to reach (Runpod ignores a template's startSsh for endpoints, SERVERLESS.md §4.3) and
  lives only while jobs come; a listening sshd would only add start time and attack surface. Its
  log is read with `podtui endpoints logs` instead.
- the idle auto-stop: the endpoint's idle timeout stops workers, and Runpod's pod-stop API does not
  apply to them. IDLE_STOP_MINUTES is ignored with a warning.
- Jupyter (JUPYTER=1 / JUPYTER_PASSWORD): pod mode only; a queue worker has no address to reach it by,
  and boot's serverless path never calls boot/notebook.py.

Standard library only (the worker process imports runpod, never boot).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from remote_agent.boot.config import BootConfig
from remote_agent.boot.steps import BootError, Reporter, daemon_environment
from remote_agent.child_env import SECRET_ENV
from remote_agent.engine.adapters.base import flag_value

WORKER_KEY_ENV = "RUNPOD_AI_API_KEY"  # the job queue's key for this worker: the SDK's, nobody else's


def describe(cfg: BootConfig, rep: Reporter) -> None:
    """The lines that say what this worker is and what it leaves out."""
    n = cfg.concurrency
    rep.step(f"serverless worker (MODE_TO_RUN=serverless): {n.value} job(s) at once "
             f"({n.source if n.source != 'default' else 'default; set MAX_CONCURRENCY'}); no sshd, host keys or "
             "tunnel (a queue worker has no address anyone could reach); logs: podtui endpoints logs")
    if not os.path.ismount(cfg.volume_dir):
        rep.warn(f"no network volume mounted at {cfg.volume_dir}: MODEL is downloaded again on every cold start; "
                 "attach a network volume to the endpoint (Runpod mounts it at /runpod-volume; BASE_PATH moves it)")
    rep.step(f"models in {cfg.models_dir} (MODEL_DIR, else BASE_PATH/models); agent state in {cfg.state_dir} "
             "(this worker's own disk: the network volume is shared by every worker)")
    if cfg.idle_stop_minutes is not None:
        rep.warn("IDLE_STOP_MINUTES is ignored in serverless mode: the endpoint's idle timeout stops its workers")
    if not cfg.env.get("RUNPOD_WEBHOOK_GET_JOB"):
        rep.warn("RUNPOD_WEBHOOK_GET_JOB is not set: Runpod sets it on serverless workers only, so the worker "
                 "will refuse to start (run this image with MODE_TO_RUN=pod outside an endpoint)")


def engine_environment(cfg: BootConfig, rep: Reporter) -> dict[str, str]:
    """The daemon's environment: as in a pod, without the worker's job-queue key, and with the
    engine's slots matching the concurrency (see the module docstring)."""
    env = {k: v for k, v in daemon_environment(cfg).items() if k != WORKER_KEY_ENV}
    n = cfg.concurrency.value
    if cfg.engine == "koboldcpp":
        args = shlex.split(env.get("ARGS", ""))
        given = flag_value(args, ("--multiuser",))
        if given is None and n > 1:
            env["ARGS"] = shlex.join([*args, "--multiuser", str(n)])
            rep.step(f"koboldcpp gets --multiuser {n}: it lets {n} requests in but generates one at a time "
                     "(koboldcpp has no parallel decoding; llama-server does)")
        elif given is not None and given != str(n):
            rep.warn(f"ARGS sets --multiuser {given} but the worker takes {n} job(s) at once")
        return env
    given = env.get("PARALLEL", "").strip()
    if not given:
        env["PARALLEL"] = str(n)
        if n > 1:
            rep.step(f"llama-server gets --parallel {n} (PARALLEL): {n} slots share the context, so each "
                     f"job gets CTX/{n} tokens; raise CTX to keep the context per job")
    elif given != str(n):
        rep.warn(f"PARALLEL={given} but the worker takes {n} job(s) at once: jobs beyond {given} wait inside "
                 "llama-server; unset PARALLEL to match")
    return env


def worker_command(cfg: BootConfig) -> list[str]:
    """`remote-agent serverless-worker --socket <the daemon's>`, with this Python."""
    return [sys.executable, "-m", "remote_agent", "serverless-worker", "--socket", str(cfg.socket)]


def worker_environment(cfg: BootConfig) -> dict[str, str]:
    """Everything the SDK reads (RUNPOD_*, MAX_CONCURRENCY, REQUEST_TIMEOUT …) minus the pod's secrets
    except the SDK's own job-queue key (RUNPOD_AI_API_KEY): the worker asks the daemon for the engine's key. RUNPOD_LOG_LEVEL defaults to INFO: the SDK's
    DEBUG default logs every job's input and output into the worker's log."""
    env = {k: v for k, v in cfg.env.items() if k not in SECRET_ENV}
    if cfg.env.get(WORKER_KEY_ENV):
        env[WORKER_KEY_ENV] = cfg.env[WORKER_KEY_ENV]   # the SDK's own key; SECRET_ENV keeps it from everyone else
    env.setdefault("RUNPOD_LOG_LEVEL", "INFO")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_worker(cfg: BootConfig, rep: Reporter) -> subprocess.Popen | None:
    """Start the worker in its own process group (its SDK heartbeat process goes down with it)."""
    cmd = worker_command(cfg)
    if cfg.dry_run:
        rep.would(f"start the serverless worker: {shlex.join(cmd)}")
        return None
    rep.step(f"starting the serverless worker: {shlex.join(cmd)}")
    try:
        return subprocess.Popen(cmd, env=worker_environment(cfg), start_new_session=True)
    except OSError as exc:
        raise BootError(f"the serverless worker could not start: {exc}",
                        "check that the image installed podtui[serverless]") from None

"""RPC cluster "pods" on loopback, each a real sshd (its own host key) plus a real `remote-agent daemon`:
backends (APP_MODE=backend, real ggml-rpc-server, the cluster key authorized into that sshd's
authorized_keys) and a server (APP_MODE=server, real llama-server --rpc over 127.0.0.1 link ports),
added to podtui with `podtui hosts add` (fingerprint pinned as verified), as a user would."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tests.testbed.agent_daemon import DaemonProcess
from tests.testbed.cli import run_podtui
from tests.testbed.procs import free_port
from tests.testbed.rpc import FAST_SERVER_FLAGS, backend_env, server_env
from tests.testbed.sshd import SshServer


@dataclass
class Pod:
    name: str
    sshd: SshServer
    daemon: DaemonProcess

    @property
    def bridge(self) -> str:
        return f"{sys.executable} -m remote_agent rpc --socket {self.daemon.socket}"

    def status(self) -> dict:
        with self.daemon.client() as client:
            return client.result("status")

    def engine_log(self) -> str:
        with self.daemon.client() as client:
            events, _ = client.call("logs.tail", {"n": 5000, "source": "engine"})
        return "\n".join(str(e.get("data", {}).get("line", "")) for e in events)


def add_host(env: dict, pod: Pod, client_key: Path, *, name: str | None = None, bridge: str | None = None) -> None:
    """`podtui hosts add` the pod (its sshd's fingerprint pinned as verified)."""
    out = run_podtui(env, "hosts", "add", f"root@127.0.0.1:{pod.sshd.port}", "--name", name or pod.name,
                     "-i", str(client_key), "--agent-command", bridge or pod.bridge,
                     "--fingerprint", pod.sshd.host_fingerprint)
    assert out.returncode == 0, out.stderr


# A backend's sshd drops a session whose client stopped answering: the sshd side of a link whose path
# froze keeps its channel to ggml-rpc-server open, and ggml-rpc-server serves one client, so the backend
# stays taken until sshd gives up. Boot gives a backend's sshd 1 s × 3 (boot/steps.role_sshd_options),
# which OpenSSH 9.2 turns into 7-8 s (about two intervals per unanswered check); the test bed does the same.
BACKEND_SSHD_CONFIG = "ClientAliveInterval 1\nClientAliveCountMax 3"


def start_pod(root: Path, name: str, llama_bin: Path, env: dict, args: list[str], client_key: Path,
              sshd_config: str = "") -> Pod:
    (root / name).mkdir(parents=True, exist_ok=True)
    sshd = SshServer(root / name / "sshd", extra_config=sshd_config).start()
    sshd.authorize(Path(f"{client_key}.pub"))
    daemon = DaemonProcess(root / name, llama_bin, env=env,
                           args=[*args, "--authorized-keys", str(sshd.authorized_keys)]).start()
    return Pod(name, sshd, daemon)


def start_backend(root: Path, name: str, llama_bin: Path, client_key: Path, **env: str) -> Pod:
    return start_pod(root, name, llama_bin, backend_env(free_port(), **env), ["--restart-backoff", "1"], client_key,
                     sshd_config=BACKEND_SSHD_CONFIG)


def start_server(root: Path, llama_bin: Path, model: Path, link_ports: list[int], client_key: Path,
                 args: list[str] = FAST_SERVER_FLAGS) -> Pod:
    return start_pod(root, "server", llama_bin, server_env(model, [f"127.0.0.1:{p}" for p in link_ports]),
                     list(args), client_key)


def stop_pods(pods: list[Pod]) -> None:
    for pod in pods:
        pod.daemon.stop()
        pod.sshd.stop()


def start_two_backend_cluster(root: Path, llama_bin: Path, model: Path, client_key: Path, env: dict) -> list[Pod]:
    """backend-a (APP_MEM 400), backend-b (APP_MEM 300) and a server over two link ports, each added to
    podtui (env: its PODTUI_* and HOME) with `podtui hosts add`. Returns [a, b, server]; on a failure the
    pods started so far are stopped."""
    started: list[Pod] = []
    try:
        for name, mem in (("backend-a", "400"), ("backend-b", "300")):
            started.append(start_backend(root, name, llama_bin, client_key, APP_MEM=mem))
        started.append(start_server(root, llama_bin, model, [free_port(), free_port()], client_key))
        for pod in started:
            add_host(env, pod, client_key)
    except BaseException:
        stop_pods(started)
        raise
    return started

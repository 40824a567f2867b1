"""The link's session on a backend names each new ggml-rpc-server, and the server's link keeps the last restart.

- session.py on its own: the forced command as sshd runs it (its own process, the engine record
  written by the agent's real EngineRecordFile for real processes), ending when stdin closes.
- End to end with real parts: a backend "pod" (test-bed sshd + `remote-agent daemon` in APP_MODE=backend
  running the test bed's ggml-rpc-server), the cluster key authorized by the agent's own
  `cluster.authorize`, and the server side's LinkSet running the real OpenSSH link. The backend's
  ggml-rpc-server is killed; its agent restarts it within a second or so, and the link
  names that backend through `last_backend_restart`. The pre-start handshake cannot do that, because
  the backend answers again by then.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remote_agent.engine.orphan import RECORD_FILE, EngineRecordFile
from remote_agent.links.authorized import MARK, session_command
from remote_agent.links.session import PREFIX, parse_line
from remote_agent.links.spec import parse_links
from remote_agent.links.supervisor import UP, LinkSet
from tests.testbed.procs import free_port
from tests.testbed.rpc import engine_pid, wait_until
from tests.testbed.rpc_pods import start_backend, stop_pods
from tests.testbed.sshd import generate_key, have_sshd

SESSION = [sys.executable, "-m", "remote_agent.links.session"]


def read_line(proc: subprocess.Popen, timeout: float = 5.0) -> tuple[int, int]:
    """The next `podtui-rpc-server PID TICKS` line the session prints (within timeout)."""
    os.set_blocking(proc.stdout.fileno(), False)
    deadline, buffer = time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read()
        buffer += chunk or b""
        if b"\n" in buffer:
            line, _, rest = buffer.partition(b"\n")
            assert not rest, rest  # one line per new process
            key = parse_line(line.decode())
            assert key is not None, line
            return key
        time.sleep(0.05)
    raise AssertionError(f"no line within {timeout}s (got {buffer!r})")


def test_the_session_names_each_new_engine_once_and_ends_when_stdin_closes(tmp_path):
    # stand-ins: real processes leading their own group, as the agent starts engines (orphan.py checks it)
    engines = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(2)]
    record = EngineRecordFile(tmp_path)
    session = subprocess.Popen([*SESSION, "--record", str(tmp_path / RECORD_FILE)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)  # no record yet: nothing to say
        record.note(engines[0].pid, port=50052, engine="ggml-rpc-server", model_path="")
        assert read_line(session)[0] == engines[0].pid
        record.note(engines[0].pid, port=50052, engine="ggml-rpc-server", model_path="")  # rewritten, same process
        record.clear()  # the agent stops it …
        time.sleep(0.5)
        record.note(engines[1].pid, port=50052, engine="ggml-rpc-server", model_path="")  # … and starts another
        assert read_line(session)[0] == engines[1].pid
        session.stdin.close()  # the server's agent ends the link
        assert session.wait(5) == 0
        assert session.stdout.read() in (b"", None) and session.stderr.read() == b""
    finally:
        session.kill()
        for engine in engines:
            engine.kill()
            engine.wait()


def test_the_forced_command_falls_back_to_a_plain_wait_when_python_cannot_start(tmp_path):
    command = session_command(str(tmp_path / "no-such-python"), tmp_path / RECORD_FILE)
    proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting: the link's session stays up (and TCP_NODELAY with it)
    proc.stdin.close()
    assert proc.wait(5) == 0


@pytest.mark.skipif(not have_sshd(), reason="needs OpenSSH's sshd (scripts/install-system-deps.sh)")
@pytest.mark.timeout(90)
def test_a_backend_whose_rpc_server_restarted_within_a_second_is_named_by_its_link(tmp_path, llama_bin):
    client_key = generate_key(tmp_path / "podtui_key")
    cluster_key = generate_key(tmp_path / "cluster_key")
    backend = start_backend(tmp_path, "backend-a", llama_bin, client_key)
    try:
        first_pid = wait_until(lambda: backend.status().get("state") == "ready" and engine_pid(backend.daemon),
                               30, "the backend's ggml-rpc-server")
        with backend.daemon.client() as client:
            installed = client.result("cluster.authorize", {"public_key": Path(f"{cluster_key}.pub").read_text()})
        assert installed["installed"]
        line = next(entry for entry in backend.sshd.authorized_keys.read_text().splitlines() if entry.endswith(MARK))
        assert "remote_agent.links.session" in line and "permitopen=" in line
        rpc_port = int(installed["permitopen"].rsplit(":", 1)[1])
        known = f"backend-a {backend.sshd.host_public_key}\n"
        endpoint = f"127.0.0.1:{free_port()}"
        specs, _, _ = parse_links({"links": [{
            "name": "backend-a", "endpoint": endpoint, "host": "127.0.0.1", "port": backend.sshd.port,
            "user": "root", "rpc_port": rpc_port, "host_key_alias": "backend-a"}],
            "known_hosts": known, "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----"})

        async def scenario() -> dict:
            links = LinkSet(tmp_path / "server-state")
            links.write_secrets(known, cluster_key.read_text())
            await links.replace(specs)
            link = links.links[0]
            try:
                await links.wait_settled(20)
                assert link.state == UP, link.snapshot()
                for _ in range(100):  # the session's first line: the process running now
                    if link.rpc_server is not None:
                        break
                    await asyncio.sleep(0.1)
                assert link.rpc_server is not None and link.rpc_server[0] == first_pid, link.snapshot()
                assert links.restarted_within(endpoint, 60) is None
                os.kill(first_pid, signal.SIGKILL)  # the backend's agent brings it back (--restart-backoff 1)
                killed = time.monotonic()
                for _ in range(150):
                    if link.last_backend_restart is not None:
                        break
                    await asyncio.sleep(0.1)
                noticed = time.monotonic() - killed
                assert link.last_backend_restart is not None, link.snapshot()
                assert noticed < 10, noticed
                assert link.state == UP  # the link itself never dropped
                assert links.restarted_within(endpoint, 30) == "backend-a"
                cluster = {"backends": [{"endpoint": endpoint}]}
                links.annotate(cluster)
                return {"snapshot": link.snapshot(), "cluster": cluster}
            finally:
                await links.stop()

        seen = asyncio.run(scenario())
        restart = seen["snapshot"]["last_backend_restart"]
        assert restart["previous_pid"] == first_pid and restart["pid"] == engine_pid(backend.daemon) != first_pid
        assert seen["cluster"]["backends"][0]["link"] == "backend-a"
        assert seen["cluster"]["backends"][0]["backend_restarted_s_ago"] < 30
        assert PREFIX not in backend.engine_log()  # the session's lines go to the link, not the engine log
    finally:
        stop_pods([backend])

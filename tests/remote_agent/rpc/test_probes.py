"""What the agent may do to a real ggml-rpc-server without harming it (engine/rpc_wire.py), and
what the installed build says about itself (engine/rpc_build.py). The test bed's own
ggml-rpc-server on 127.0.0.1; SIGPIPE at its default where the test says so."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import time

import pytest

from remote_agent.engine.rpc_build import list_rpc_devices, llama_build, parse_banner, rpc_banner
from remote_agent.engine.rpc_wire import CLOSED, REFUSED, SILENT, BackendProbeError, RpcVersion, hello, listening
from tests.testbed.procs import free_port, stop_process
from tests.testbed.rpc import FakeRpcServer, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def start_rpc(llama_bin, tmp_path):
    started: list[subprocess.Popen] = []

    def start(sigpipe_ignored: bool) -> tuple[subprocess.Popen, int]:
        port = free_port()
        proc = subprocess.Popen([str(llama_bin / "ggml-rpc-server"), "-H", "127.0.0.1", "-p", str(port), "-t", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                restore_signals=not sigpipe_ignored)
        started.append(proc)
        wait_until(lambda: listening(port, "127.0.0.1"), 10, "ggml-rpc-server listening")
        return proc, port

    yield start
    for proc in started:
        stop_process(proc, grace=2)


def _hello_without_reading(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(struct.pack("<BQ", 14, 24) + bytes(24))


def test_listening_is_read_from_proc_without_connecting(start_rpc):
    proc, port = start_rpc(sigpipe_ignored=False)
    assert listening(port, "127.0.0.1") and listening(port)
    assert not listening(port, "127.0.0.2")  # the same port on another address is not ours
    assert not listening(free_port(), "127.0.0.1")
    proc.kill()
    proc.wait()
    assert not listening(port, "127.0.0.1")


def test_connect_close_and_a_read_handshake_leave_a_default_sigpipe_server_serving(start_rpc):
    proc, port = start_rpc(sigpipe_ignored=False)
    for _ in range(3):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    versions = [asyncio.run(hello("127.0.0.1", port, 5.0)) for _ in range(3)]
    assert versions == [RpcVersion(7, 0, 0)] * 3
    time.sleep(0.3)
    assert proc.poll() is None, "the server died of our probes"


def test_a_handshake_left_unread_kills_a_default_server_but_not_one_with_sigpipe_ignored(start_rpc):
    default, default_port = start_rpc(sigpipe_ignored=False)
    ignored, ignored_port = start_rpc(sigpipe_ignored=True)
    # It dies when the client's RST lands between the two writes of its reply (size, then payload): a
    # race that a loaded machine loses now and then (seen in full runs), so up to 20 such clients.
    for _ in range(20):
        try:
            _hello_without_reading(default_port)
        except ConnectionRefusedError:   # it died just after the last wait
            break
        try:
            default.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            continue
    assert default.wait(timeout=10) == -13  # SIGPIPE: why the agent reads every reply and starts it ignored
    for _ in range(3):
        _hello_without_reading(ignored_port)
    time.sleep(0.3)
    assert ignored.poll() is None
    assert asyncio.run(hello("127.0.0.1", ignored_port, 5.0)) == RpcVersion(7, 0, 0)


def test_a_frozen_server_accepts_the_connection_but_is_silent_and_nothing_listening_is_refused(start_rpc):
    proc, port = start_rpc(sigpipe_ignored=True)
    proc.send_signal(19)  # SIGSTOP
    try:
        with pytest.raises(BackendProbeError) as frozen:
            asyncio.run(hello("127.0.0.1", port, 1.0))
        assert frozen.value.reason == SILENT
    finally:
        proc.send_signal(18)  # SIGCONT
    with pytest.raises(BackendProbeError) as refused:
        asyncio.run(hello("127.0.0.1", free_port(), 1.0))
    assert refused.value.reason == REFUSED
    assert asyncio.run(hello("127.0.0.1", port, 5.0)) == RpcVersion(7, 0, 0)  # it survived our closed probe


def test_the_double_answers_with_another_version_and_a_wrong_reply_is_closed():
    with FakeRpcServer((3, 0, 0)) as fake:
        assert asyncio.run(hello("127.0.0.1", fake.port, 2.0)) == RpcVersion(3, 0, 0)
    assert not RpcVersion(3, 0, 0).serves(RpcVersion(7, 0, 0))
    assert RpcVersion(7, 0, 0).serves(RpcVersion(7, 1, 0)) and not RpcVersion(7, 2, 0).serves(RpcVersion(7, 1, 0))
    with socket.socket() as server:  # closes at once: what a server of an older generation does
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        async def probe():
            task = asyncio.create_task(hello("127.0.0.1", server.getsockname()[1], 2.0))
            conn, _ = await asyncio.to_thread(server.accept)
            conn.close()
            return await task

        with pytest.raises(BackendProbeError) as closed:
            asyncio.run(probe())
        assert closed.value.reason == CLOSED


def test_the_build_says_its_protocol_and_devices_without_binding(llama_bin):
    banner = rpc_banner(llama_bin)
    assert banner.protocol == RpcVersion(7, 0, 0)
    assert banner.devices and banner.devices[0].name == "CPU" and banner.devices[0].total_mib > 0
    assert llama_build(llama_bin).startswith("0.5.0-dev (build 1, commit 0c1e570)")
    again = parse_banner(["Starting RPC server v7.0.0", "Devices:", "  CPU: AMD EPYC (24105 MiB, 24105 MiB free)",
                          "Starting RPC server v7.1.0", "Devices:", "  CUDA0: NVIDIA H100 (81559 MiB, 80000 MiB free)"])
    assert again.protocol == RpcVersion(7, 1, 0) and [d.name for d in again.devices] == ["CUDA0"]


def test_llama_server_lists_the_backends_devices_in_rpc_order(start_rpc, llama_bin):
    (_, first), (_, second) = start_rpc(sigpipe_ignored=True), start_rpc(sigpipe_ignored=True)
    devices = list_rpc_devices(llama_bin, f"127.0.0.1:{first},127.0.0.1:{second}")
    assert [(d.name, d.description) for d in devices] == [("RPC0", f"127.0.0.1:{first}"),
                                                          ("RPC1", f"127.0.0.1:{second}")]
    assert all(0 < d.free_mib <= d.total_mib for d in devices)

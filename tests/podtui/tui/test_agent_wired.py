"""The TUI's agent flows end to end: a pod from the Runpod double whose SSH port is the test-bed
sshd, its host key pinned from a block the real `remote-agent boot` printed, and the real
`remote-agent daemon` running the real CPU llama-server on the tiny models. Swap (success and a
rolled-back failure), context fit, the agent's log, and a tunnel carrying a real chat completion."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

import pytest

from tests.podtui.tui.helpers import shown

from podtui.services.pods import PodService
from podtui.ssh.connection import ConnectOptions
from podtui.ssh.hostkeys import parse_printed_blocks
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import pod_alias
from podtui.services.sessions import AgentSessions
from podtui.tui.app import build_app
from podtui.services.dashboard import ProviderServices
from podtui.tui.screens.logs import LogsScreen
from podtui.tui.screens.swap import SwapDialog
from podtui.tui.widgets.pod_table import PodTable
from tests.testbed.agent_daemon import DaemonProcess
from tests.testbed.boot_logs import real_boot_log
from tests.testbed.runpod_provider import API_KEY, make_provider
from tests.testbed.procs import free_port
from tests.testbed.runpod_double import SPEC_PATH, RunpodDouble

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def daemon(tmp_path, llama_bin, tiny_model):
    root = tmp_path / "daemon"
    root.mkdir()
    # the budget lets `c` (fit.search) run without nvidia-smi: the estimate is checked by a real launch
    process = DaemonProcess(root, llama_bin, env={"MODEL": str(tiny_model), "CTX": "1024"},
                            args=["--memory-budget", "2GiB"]).start()
    process.wait_for_state({"ready"}, timeout=60)
    yield process
    process.stop()


@pytest.fixture
def wired(tmp_path, sshd, client_key, daemon):
    """ProviderServices over the double, the pod pinned to what the real boot printed."""
    if not SPEC_PATH.exists():
        pytest.skip(f"the Runpod REST v2 spec is not at {SPEC_PATH}")
    double = RunpodDouble(API_KEY, ssh_host="127.0.0.1", ssh_port=sshd.port).start()
    pod = double.add_pod("tiny", env={"PORT": str(daemon.port), "MODEL": "tiny-a"})
    log = real_boot_log(pod["id"], sshd.host_key, tmp_path / "boot")
    known_hosts = KnownHosts(tmp_path / "known_hosts")
    known_hosts.replace(pod_alias(pod["id"]), list(parse_printed_blocks(log).keys), verified=True)
    provider = make_provider(double)
    sessions = AgentSessions(ConnectOptions(identity=client_key, use_agent=False),
                             agent_command=f"{sys.executable} -m remote_agent rpc "
                                           f"--socket {daemon.socket}")
    port = free_port()
    services = ProviderServices([PodService(provider, known_hosts)], sessions=sessions,
                                tunnel_ports=range(port, port + 1))
    yield services, pod
    for key in list(services._tunnels):
        services.toggle_tunnel(key)
    sessions.close_all()
    provider.api.close()
    double.stop()


async def wait_for(pilot, condition, timeout=30.0):
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"condition not reached; screen {pilot.app.screen!r}, "
                         f"errors: {pilot.app.errors_shown}")


async def main_ready(pilot):
    await wait_for(pilot, lambda: pilot.app.screen.query(PodTable) and
                   pilot.app.screen.refreshed_once)


async def test_swap_serves_the_new_model_then_a_bad_one_rolls_back(wired, tiny_model, tiny_model_b,
                                                                   tmp_path):
    services, pod = wired
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(4096))
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 48)) as pilot:
        await main_ready(pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: shown(app.screen, SwapDialog))
        dialog = app.screen
        dialog.query_one("#model").value = str(tiny_model_b)
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.outcome == "ok", timeout=90)
        assert str(tiny_model_b) in str(dialog.query_one("#swap-result").render())

        dialog.query_one("#model").value = str(corrupt)
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.outcome == "failed", timeout=90)
        text = str(dialog.query_one("#swap-result").render())
        assert "bad_model" in text and f"rolled back to {tiny_model_b}" in text
        await pilot.pause(0.3)   # late events (the rollback's "ready") must not refill the bar
        assert dialog.query_one("#progress-load").progress == 0      # the new model never loaded
        assert app.errors_shown == []


async def test_logs_stream_from_the_agent_and_a_tunnel_carries_a_chat_completion(wired, daemon):
    services, pod = wired
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 48)) as pilot:
        await main_ready(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen))
        view = app.screen.log_view
        await wait_for(pilot, lambda: view.buffer.total > 0)
        assert any("[engine]" in view.buffer.row(i)[1] or "[agent]" in view.buffer.row(i)[1]
                   for i in range(len(view.buffer)))
        await pilot.press("escape")

        await pilot.press("t")
        await wait_for(pilot, lambda: services._tunnels and services._api_keys)
        url = next(iter(services._tunnels.values()))[1]
        key = next(iter(services._api_keys.values()))
        assert key == daemon.api_key()
        await main_ready(pilot)
        body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).encode()
        request = urllib.request.Request(f"{url}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError, match="401"):   # a web page without the key
            urllib.request.urlopen(request, timeout=30)
        request.add_header("Authorization", f"Bearer {key}")
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert json.load(reply)["choices"]
        app.screen.refresh_pods()
        await wait_for(pilot, lambda: url in str(app.screen.query_one(PodTable).get_row_at(0)[9]))
        await pilot.press("enter")      # the details show the key beside the tunnel's URL
        details = str(app.screen.query_one("#details-text").render())
        assert f"tunnel_url       {url}" in details and f"api_key          {key}" in details
        await pilot.press("escape")
        await pilot.press("t")
        await wait_for(pilot, lambda: not services._tunnels)


async def test_context_fit_runs_the_agents_search_and_says_the_result(wired, daemon):
    services, pod = wired
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 48)) as pilot:
        await main_ready(pilot)
        await pilot.press("c")

        def results() -> list[str]:  # the notifications after "context fit NAME…"
            return [n.message for n in app._notifications if n.message.startswith(f"{pod['name']}:")]

        await wait_for(pilot, results, timeout=120)
        result = results()[-1]
        assert app.errors_shown == [], app.errors_shown
    # the search capped by CTX=1024 left the engine serving at that context
    with daemon.client() as client:
        status = client.result("status")
    assert status["state"] == "ready" and status["ctx"] == 1024
    assert "ctx 1024 fits" in result and "launch" in result, result


def test_a_tunnel_on_an_unverified_pin_says_so(wired, tmp_path):
    """A pin the user trusted without checking it is never reported as verified."""
    services, pod = wired
    service = services.services[0]
    alias = pod_alias(pod["id"])
    service.known_hosts.replace(alias, [p.key for p in service.known_hosts.pins_for(alias)], verified=False)
    said = services.toggle_tunnel(f"runpod:{pod['id']}")
    assert "UNVERIFIED" in said and "(host key verified)" not in said, said

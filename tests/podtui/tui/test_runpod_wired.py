"""The TUI over the real Runpod provider and PodService, against the REST v2 double; the host-key
flow against the test-bed sshd with a block printed by the real `remote-agent boot`."""

from __future__ import annotations

import pytest

from tests.podtui.tui.helpers import shown

from podtui.services.pods import PodService
from podtui.ssh.connection import ConnectOptions
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import pod_alias
from podtui.services.sessions import AgentSessions
from podtui.tui.app import build_app
from podtui.services.dashboard import ProviderServices
from podtui.tui.screens.confirm_terminate import ConfirmTerminate
from podtui.tui.screens.hostkey import HostKeyDialog
from podtui.tui.screens.launch import LaunchScreen
from podtui.tui.screens.logs import LogsScreen
from podtui.tui.widgets.pod_table import PodTable
from tests.testbed.boot_logs import real_boot_log
from tests.testbed.runpod_provider import make_provider
from tests.testbed.sshd import generate_key

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def double(runpod_double):
    return runpod_double     # tests/podtui/conftest.py: the spec-checking Runpod double


@pytest.fixture
def services(double, tmp_path, client_key):
    provider = make_provider(double)
    service = PodService(provider, KnownHosts(tmp_path / "known_hosts"), wait_timeout_s=10,
                         block_timeout_s=3, poll_s=0.1)
    sessions = AgentSessions(ConnectOptions(identity=client_key, use_agent=False))
    services = ProviderServices([service], sessions=sessions)
    yield services
    services.close()
    provider.api.close()


async def wait_for(pilot, condition, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"condition not reached; screen {pilot.app.screen!r}, "
                         f"errors shown: {pilot.app.errors_shown}")


async def main_ready(pilot):
    await wait_for(pilot, lambda: pilot.app.screen.query(PodTable) and
                   pilot.app.screen.refreshed_once)


def names(app) -> list[str]:
    table = app.screen.query_one(PodTable)
    return [table.get_row_at(i)[0] for i in range(table.row_count)]


async def test_lists_stops_and_terminates_runpod_pods(double, services):
    double.add_pod("alpha", cost=0.69, env={"MODEL": "org/repo:Q4_K_M", "CTX": "8192"})
    double.add_pod("beta", status="EXITED")
    app = build_app(services, refresh_seconds=0.3)
    async with app.run_test(size=(160, 40)) as pilot:
        await main_ready(pilot)
        assert sorted(names(app)) == ["alpha", "beta"]
        assert "1 running · $0.69/hr" in str(app.screen.query_one("#summary").render())
        table = app.screen.query_one(PodTable)
        table.move_cursor(row=names(app).index("alpha"))
        await pilot.press("s")
        await wait_for(pilot, lambda: double.stops())
        await wait_for(pilot, lambda: "0 running" in str(app.screen.query_one("#summary")
                                                         .render()))
        table.move_cursor(row=names(app).index("beta"))
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmTerminate))
        await pilot.press(*"beta", "enter")
        await wait_for(pilot, lambda: double.requests_to("DELETE", "/v2/pods/"))
        await wait_for(pilot, lambda: "beta" not in names(app))


async def test_an_api_failure_shows_in_the_footer_not_as_dialogs(double, tmp_path):
    wrong_key = "rpa_WRONG_KEY_0000000000000000000000"
    provider = make_provider(double, key=wrong_key)
    services = ProviderServices([PodService(provider, KnownHosts(tmp_path / "known_hosts"))])
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await main_ready(pilot)
        summary = str(app.screen.query_one("#summary").render())
        assert "runpod:" in summary and "rejected" in summary.lower()
        assert app.errors_shown == []
        assert wrong_key not in summary
    provider.api.close()


async def test_logs_follow_the_pod_log_read_through_the_api(double, services):
    pod = double.add_pod("alpha")
    double.append_log(pod["id"], "boot line one\nboot line two")
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        await main_ready(pilot)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen))
        view = app.screen.log_view
        await wait_for(pilot, lambda: view.buffer.total >= 2)
        assert [view.buffer.row(i)[1] for i in range(2)] == ["boot line one", "boot line two"]


async def open_hostkey(pilot) -> HostKeyDialog:
    await main_ready(pilot)
    await pilot.press("v")
    await wait_for(pilot, lambda: shown(pilot.app.screen, HostKeyDialog), timeout=30)
    return pilot.app.screen


async def test_verify_compares_the_presented_key_with_the_printed_one_and_pins_it(
        double, services, sshd, tmp_path):
    double.ssh_host, double.ssh_port = "127.0.0.1", sshd.port
    pod = double.add_pod("alpha")
    double.append_log(pod["id"], real_boot_log(pod["id"], sshd.host_key, tmp_path / "boot"))
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        dialog = await open_hostkey(pilot)
        assert dialog.check.presented == dialog.check.printed == sshd.host_fingerprint
        dialog.query_one("#pin-verified").press()
        known_hosts = services.services[0].known_hosts
        await wait_for(pilot, lambda: known_hosts.pins_for(pod_alias(pod["id"])))
        pins = known_hosts.pins_for(pod_alias(pod["id"]))
        assert [(p.key.fingerprint, p.verified) for p in pins] == [(sshd.host_fingerprint, True)]


async def test_a_pod_log_printing_another_key_is_a_red_mismatch(double, services, sshd, tmp_path):
    double.ssh_host, double.ssh_port = "127.0.0.1", sshd.port
    pod = double.add_pod("alpha")
    impostor = generate_key(tmp_path / "other_host_key")
    double.append_log(pod["id"], real_boot_log(pod["id"], impostor, tmp_path / "boot"))
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 40)) as pilot:
        dialog = await open_hostkey(pilot)
        assert dialog.check.presented == sshd.host_fingerprint
        assert dialog.check.printed not in (None, sshd.host_fingerprint)
        assert dialog.mismatch and not dialog.query("#pin-verified")


async def test_launch_through_the_double_pins_the_printed_keys(double, services, sshd, tmp_path):
    double.ssh_host, double.ssh_port = "127.0.0.1", sshd.port
    double.boot_log = lambda pod_id: real_boot_log(pod_id, sshd.host_key, tmp_path / "boot")
    launched: list[str] = []
    launch = services.launch
    services.launch = lambda spec, progress: launched.append(launch(spec, progress)) or launched[0]
    app = build_app(services, refresh_seconds=60)
    async with app.run_test(size=(160, 48)) as pilot:
        await main_ready(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: shown(app.screen, LaunchScreen))
        assert app.screen.query_one("#gpus").row_count >= 1
        app.screen.query_one("#model").value = "org/repo:Q4_K_M"
        await pilot.click("#launch")
        await wait_for(pilot, lambda: not isinstance(app.screen, LaunchScreen), timeout=30)
        created = double.requests_to("POST", "/v2/pods")
        assert created and created[0]["body"]["env"]["MODEL"] == "org/repo:Q4_K_M"
        pod_id = next(iter(double.pods))
        pins = services.services[0].known_hosts.pins_for(pod_alias(pod_id))
        assert [(p.key.fingerprint, p.verified) for p in pins] == [(sshd.host_fingerprint, True)]
        # and the tunnel opened against the new pin, so the launch ends with a local URL
        assert "tunnel up: http://127.0.0.1:" in launched[0], launched
        assert "(host key verified)" in launched[0]

"""The endpoints section of the TUI over the real services (podtui.services.dashboard_endpoints), against
the Runpod REST v2 DOUBLE (tests/testbed/runpod_double.py, bodies checked against openapi-v2.json) and
the Serverless platform DOUBLE (tests/testbed/runpod_platform.py: job queue + runtime API of endpoint
ep1). Where a key needs a worker (wake, test, keep-alive), the REAL runpod SDK worker loop answers in
front of the REAL llama-server. Everything stays on 127.0.0.1; the SDK workers run with the fitness
checks skipped and a temporary HOME (tests/testbed/sdk_worker.py)."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Button, Static

from tests.podtui.tui.helpers import shown

from podtui.providers.runpod_endpoints import RunpodEndpoints
from podtui.services.dashboard import ProviderServices
from podtui.services.dashboard_endpoints import NO_KEY_TITLE, EndpointBoard
from podtui.services.pods import PodService
from podtui.ssh.known_hosts import KnownHosts
from podtui.tui.app import build_app
from podtui.tui.screens.confirm_delete_endpoint import ConfirmDeleteEndpoint
from podtui.tui.screens.endpoint_test import EndpointTestDialog
from podtui.tui.screens.error_dialog import ErrorDialog
from podtui.tui.screens.logs import LogsScreen
from podtui.tui.widgets.endpoint_panel import EndpointsPanel
from podtui.tui.widgets.endpoint_table import EndpointTable
from podtui.tui.widgets.pod_table import PodTable
from tests.testbed.runpod_platform import PlatformDouble
from tests.testbed.runpod_provider import API_KEY, TEST_IMAGE, make_provider
from tests.testbed.sdk_worker import sdk_worker_factory, warm_endpoint

pytestmark = pytest.mark.timeout(120)
EP = "ep1"   # the endpoint the platform double serves


@pytest.fixture
def quiet_platform():
    """The runtime of ep1 with no worker at all: /health answers, jobs wait in the queue."""
    with PlatformDouble(EP, API_KEY) as platform:
        yield platform


@pytest.fixture(scope="module")
def warm_platform(llama_server, tmp_path_factory):
    """ep1 with one real SDK worker already taking jobs, in front of llama-server."""
    with warm_endpoint(EP, API_KEY, llama_server.port, tmp_path_factory.mktemp("tui-warm-worker")) as platform:
        yield platform


def wired(double, platform, tmp_path, **board_options) -> ProviderServices:
    provider = make_provider(double)
    rest = RunpodEndpoints(provider.api, image=TEST_IMAGE, log_quiet_s=0.4)
    board = EndpointBoard(rest, runtime_base=f"{platform.base_url}/v2", **{
        "wake_timeout_s": 60, "test_timeout_s": 60, "keep_warm_poll_s": 0.1, "runtime_timeout_s": 10,
        "log_rescan_s": 1.0, **board_options})
    return ProviderServices([PodService(provider, KnownHosts(tmp_path / "known_hosts"))], endpoints=board)


async def wait_for(pilot, condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"{what} not reached; screen {pilot.app.screen!r}, errors: {pilot.app.errors_shown}, "
                         f"notes: {notes(pilot.app)}")


def panel(app) -> EndpointsPanel:
    return app.screen.query_one(EndpointsPanel)


def summary(app) -> str:
    return str(panel(app).query_one("#endpoints-summary", Static).render())


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


def cells(app, name: str) -> list[str]:
    table = panel(app).query_one(EndpointTable)
    for index in range(table.row_count):
        row = [str(cell) for cell in table.get_row_at(index)]
        if row[0] == name:
            return row
    raise AssertionError(f"no endpoint row {name!r}")


async def listed(pilot, name: str | None = None):
    await wait_for(pilot, lambda: pilot.app.screen.query(PodTable) and panel(pilot.app).refreshed_once
                   and (name is None or any(r.label == name for r in panel(pilot.app).listing.rows)),
                   what=f"endpoints listed ({name})")


async def select(pilot, name: str):
    await listed(pilot, name)
    table = panel(pilot.app).query_one(EndpointTable)
    table.focus()
    table.move_cursor(row=table.get_row_index(next(r.key for r in panel(pilot.app).listing.rows if r.label == name)))
    await pilot.pause()


async def test_endpoints_are_listed_beside_pods_with_state_workers_queue_pools_and_price(
        runpod_double, quiet_platform, tmp_path):
    runpod_double.add_pod("alpha")
    runpod_double.add_endpoint("llm", endpoint_id=EP, pools=("ADA_24", "AMPERE_48"))
    crashy = runpod_double.add_endpoint("crashy")            # not served by the runtime double: /health 404
    runpod_double.set_workers(crashy["id"], ["UNHEALTHY", "THROTTLED"])
    runpod_double.add_endpoint("forgotten", workers_max=0)
    quiet_platform.submit({"openai_route": "/v1/models"})   # one job waits: no worker will come
    app = build_app(wired(runpod_double, quiet_platform, tmp_path), refresh_seconds=60,
                    activity_log=tmp_path / "podtui.log")
    async with app.run_test(size=(170, 45)) as pilot:
        await listed(pilot, "forgotten")
        assert app.screen.query_one(PodTable).get_row_at(0)[0] == "alpha"
        llm = cells(app, "llm")
        assert llm[1:6] == ["cold", "none", "1", "1x ADA_24/AMPERE_48", "$1.22"]   # the dearest pool's price
        assert llm[6:9] == ["0–3", "5s", "off"] and llm[9] == "org/repo:Q4_K_M"
        # /health unknown for crashy: the state comes from the workers view, the queue is unknown
        assert cells(app, "crashy")[1:4] == ["unhealthy", "1 throttled, 1 unhealthy", "?"]
        assert cells(app, "forgotten")[1] == "⚠ max workers 0"
        line = summary(app)
        assert line.startswith("3 endpoints · 0 warm")
        assert "llm queue: no worker allocated yet" in line
        assert "crashy: 1 worker(s) UNHEALTHY" in line and "not a capacity shortage" in line
        assert "forgotten: max workers is 0" in line and "--workers-max 3" in line
        assert API_KEY not in line + "".join(notes(app))
    assert API_KEY not in (tmp_path / "podtui.log").read_text()


async def test_without_a_runpod_key_the_section_says_how_to_add_one(tmp_path):
    services = ProviderServices([], needs_runpod_key=True)
    app = build_app(services, refresh_seconds=60, offer_first_run=False)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: panel(app).refreshed_once)
        assert not panel(app).query_one(EndpointTable).display
        assert summary(app).startswith(NO_KEY_TITLE) and "RUNPOD_API_KEY" in summary(app)


async def test_wake_shows_progress_and_reports_the_cold_start_delay(runpod_double, llama_server, tmp_path):
    runpod_double.add_endpoint("llm", endpoint_id=EP)
    factory = sdk_worker_factory(llama_server.port, log_dir=tmp_path / "workers")
    with PlatformDouble(EP, API_KEY, worker_factory=factory, cold_start_s=1.0, idle_timeout_s=30) as platform:
        app = build_app(wired(runpod_double, platform, tmp_path), refresh_seconds=60,
                        activity_log=tmp_path / "podtui.log")
        async with app.run_test(size=(170, 45)) as pilot:
            await listed(pilot, "llm")
            assert cells(app, "llm")[1] == "cold"
            await pilot.press("tab")                       # from the pods to the endpoints table
            assert isinstance(app.focused, EndpointTable)
            await pilot.press("w")
            seen: set[str] = set()

            def woken() -> bool:
                seen.add(summary(app))
                return any("is warm" in note for note in notes(app))

            await wait_for(pilot, woken, timeout=60, what="the wake result")
            result = next(note for note in notes(app) if "is warm" in note)
            assert result.startswith("llm is warm: cold start: a worker started and answered after a queue delay of")
            delay = float(result.split("queue delay of ")[1].split(" s")[0])
            assert delay >= 1.0                            # the double's cold start, and the worker's boot
            assert any("⏳ waking llm: waiting for a worker (cold start)" in text for text in seen)
            await wait_for(pilot, lambda: cells(app, "llm")[1] == "warm", what="the row turning warm")
            assert platform.worker_starts == 1 and app.errors_shown == []
    log = (tmp_path / "podtui.log").read_text()
    assert "wake llm: sent the wake job" in log and "wake llm: waiting for a worker (cold start)" in log
    assert "wake llm: llm is warm: cold start" in log and API_KEY not in log


async def test_test_streams_a_chat_into_a_dialog_and_times_it(runpod_double, warm_platform, tmp_path):
    runpod_double.add_endpoint("llm", endpoint_id=EP)
    app = build_app(wired(runpod_double, warm_platform, tmp_path), refresh_seconds=60)
    async with app.run_test(size=(170, 45)) as pilot:
        await select(pilot, "llm")
        await pilot.press("t")
        await wait_for(pilot, lambda: shown(app.screen, EndpointTestDialog))
        dialog = app.screen
        await wait_for(pilot, lambda: dialog.outcome is not None, timeout=60, what="the test's answer")
        assert not dialog.failed, dialog.outcome
        assert dialog.answer                               # llama-server's tokens, streamed in
        assert dialog.outcome.startswith("llm answered with model ") and "first token after" in dialog.outcome
        assert str(dialog.query_one("#test-answer", Static).render()) == f"llm: {dialog.answer}"
        chats = [job for job in warm_platform.jobs if job["input"].get("openai_route") == "/v1/chat/completions"]
        assert chats and chats[-1]["input"]["openai_input"]["stream"] is True
        await pilot.press("escape")
        assert isinstance(app.screen.query_one(EndpointsPanel), EndpointsPanel)


async def test_keep_alive_pings_shows_in_the_row_and_stops_by_itself_saying_what_it_cost(
        runpod_double, warm_platform, tmp_path):
    runpod_double.add_endpoint("llm", endpoint_id=EP)           # idleTimeout 5 s: a ping every 3 s
    # the wake job is answered in about 1 s, the first ping due 3 s later: 5.5 s leaves room for one
    app = build_app(wired(runpod_double, warm_platform, tmp_path, keep_warm_idle_s=5.5), refresh_seconds=0.5)
    before = len(warm_platform.jobs)
    async with app.run_test(size=(170, 45)) as pilot:
        await select(pilot, "llm")
        await pilot.press("k")
        await wait_for(pilot, lambda: any(n.startswith("keep-alive on for llm:") for n in notes(app)))
        said = next(n for n in notes(app) if n.startswith("keep-alive on for llm:"))
        assert "a no-op job every 3 s" in said and "≈ $0.00 at $1.10/hr per worker" in said
        await wait_for(pilot, lambda: cells(app, "llm")[8].startswith("on · "), what="keep-alive in the row")
        await wait_for(pilot, lambda: any("ended after" in n for n in notes(app)), timeout=20,
                       what="keep-alive ending at its idle limit")
        ended = next(n for n in notes(app) if "ended after" in n)
        pings = int(ended.split(" ping(s) kept a worker up ")[0].rsplit(" ", 1)[1])
        assert pings >= 1 and "worker-seconds ($0.00" in ended        # a few seconds at $1.10/hr
        await wait_for(pilot, lambda: cells(app, "llm")[8] == "off", what="the row saying off")
        jobs = [job for job in warm_platform.jobs[before:] if job["input"] == {"openai_route": "/v1/models"}]
        assert len(jobs) == 1 + pings                                 # the wake job, then the pings
        await pilot.pause(1.5)
        assert len(warm_platform.jobs) == before + 1 + pings          # and nothing after


async def test_keep_alive_off_stops_the_pings_at_once(runpod_double, quiet_platform, tmp_path):
    runpod_double.add_endpoint("llm", endpoint_id=EP)
    app = build_app(wired(runpod_double, quiet_platform, tmp_path), refresh_seconds=60)
    async with app.run_test(size=(170, 45)) as pilot:
        await select(pilot, "llm")
        await pilot.press("k")
        await wait_for(pilot, lambda: any(n.startswith("keep-alive on for llm:") for n in notes(app)))
        await wait_for(pilot, lambda: cells(app, "llm")[8].startswith("on · "))
        await pilot.press("k")
        await wait_for(pilot, lambda: any(n.startswith("keep-alive off for llm:") for n in notes(app)))
        await wait_for(pilot, lambda: cells(app, "llm")[8] == "off")
        sent = len(quiet_platform.jobs)
        assert sent == 1   # the wake job, queued: no worker here
        await pilot.pause(1.0)
        assert len(quiet_platform.jobs) == sent


async def test_logs_follow_the_workers_logs_in_the_log_view(runpod_double, quiet_platform, tmp_path):
    runpod_double.add_endpoint("llm", endpoint_id=EP)
    runpod_double.set_workers(EP, [("w7", "IDLE")])
    runpod_double.append_worker_log(EP, "w7", "engine ready: tiny-a.gguf\nslot 0 | task 1 | done")
    app = build_app(wired(runpod_double, quiet_platform, tmp_path), refresh_seconds=60)
    async with app.run_test(size=(170, 45)) as pilot:
        await select(pilot, "llm")
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen))
        view = app.screen.log_view
        await wait_for(pilot, lambda: view.buffer.total >= 2, what="the backfill")
        runpod_double.append_worker_log(EP, "w7", "a line written later")
        await wait_for(pilot, lambda: view.buffer.total >= 3, what="a live line")
        lines = [view.buffer.row(i)[1] for i in range(3)]
        assert [line.split("  ")[0] for line in lines] == ["w7"] * 3
        assert [line.split("  ")[-1] for line in lines] == ["engine ready: tiny-a.gguf", "slot 0 | task 1 | done",
                                                            "a line written later"]
        assert app.screen.source.title == "worker logs of endpoint llm"
        await pilot.press("escape")


async def test_delete_asks_for_the_name_and_says_the_bound_template_goes_too(runpod_double, quiet_platform, tmp_path):
    endpoint = runpod_double.add_endpoint("llm")
    runpod_double.add_endpoint("keep-me")
    app = build_app(wired(runpod_double, quiet_platform, tmp_path), refresh_seconds=60)
    async with app.run_test(size=(170, 45)) as pilot:
        await select(pilot, "llm")
        await pilot.press("D")
        await wait_for(pilot, lambda: shown(app.screen, ConfirmDeleteEndpoint))
        body = str(app.screen.query_one("#confirm-body", Static).render())
        assert "template bound to it" in body and "for good" in body
        await pilot.press(*"ll", "enter")                          # a wrong name deletes nothing
        assert app.screen.query_one("#delete", Button).disabled
        assert isinstance(app.screen, ConfirmDeleteEndpoint)
        await pilot.press("m", "enter")
        await wait_for(pilot, lambda: runpod_double.requests_to("DELETE", "/v2/serverless/"))
        assert [r["path"] for r in runpod_double.requests_to("DELETE", "/v2/serverless/")] == \
            [f"/v2/serverless/{endpoint['id']}"]
        await wait_for(pilot, lambda: [r.label for r in panel(app).listing.rows] == ["keep-me"])
        assert any(n == f"endpoint {endpoint['id']} (llm) deleted, with the template bound to it" for n in notes(app))
        assert not [t for t in runpod_double.templates.values() if "llm" in t["name"]]


async def test_a_failing_key_shows_the_error_dialog_with_its_fix_never_a_traceback(
        runpod_double, quiet_platform, tmp_path):
    runpod_double.add_endpoint("ghost")      # REST lists it; the runtime does not know it (404)
    app = build_app(wired(runpod_double, quiet_platform, tmp_path), refresh_seconds=60)
    async with app.run_test(size=(170, 45)) as pilot:
        await select(pilot, "ghost")
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        title, fix = app.errors_shown[-1]
        assert "no serverless endpoint" in title and "podtui endpoints list" in fix
        assert "Traceback" not in title + fix and API_KEY not in title + fix
        await pilot.press("escape")
        await wait_for(pilot, lambda: not panel(app).busy, what="the wake line cleared")
        await pilot.press("t")                # the test dialog shows its failure in place
        await wait_for(pilot, lambda: shown(app.screen, EndpointTestDialog))
        dialog = app.screen
        await wait_for(pilot, lambda: dialog.outcome is not None)
        result = str(dialog.query_one("#test-result", Static).render())
        assert dialog.failed and result.startswith("✘ ") and "Fix: " in result

"""RPC clusters on the main screen with fixed rows through the TuiServices port (the screens' own
contract; the real façade against a real loopback cluster is test_cluster_wired.py): the group's
keys, the typed-name terminate, what a backend row refuses, the filter, and one snapshot (review
the SVG in __snapshots__/test_cluster_screen/)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from podtui.services.front import ClusterListing, ClusterMember, ClusterRow, DeviceMemory, PodListing, PodRow
from podtui.tui.app import build_app
from podtui.tui.screens.confirm_terminate import ConfirmTerminate, ConfirmTerminateCluster
from podtui.tui.screens.details import RowDetails
from podtui.tui.screens.swap import SwapDialog
from podtui.tui.widgets.cluster_rows import MemberRow
from podtui.tui.widgets.pod_table import PodTable
from tests.podtui.tui.helpers import shown
from tests.podtui.tui.inprocess import InProcessServices, sample_pods

pytestmark = pytest.mark.timeout(60)
SIZE = (170, 36)


def cluster_pods() -> list[PodRow]:
    return [
        PodRow(key="runpod:srv1", name="c1-server", provider="runpod", status="RUNNING", gpu="A40",
               price_per_hour=0.44, uptime_s=5400, model="bartowski/Llama-3.3-70B-Instruct-GGUF:Q4_K_M",
               ctx=16384, engine_state="ready"),
        PodRow(key="runpod:bk1", name="c1-backend-1", provider="runpod", status="RUNNING", gpu="A40",
               price_per_hour=0.44, uptime_s=5460),
        PodRow(key="runpod:bk2", name="c1-backend-2", provider="runpod", status="RUNNING", gpu="A40",
               price_per_hour=0.44, uptime_s=5460),
    ]


def sample_cluster(state: str = "serving", detail: str = "") -> ClusterRow:
    device = DeviceMemory("CUDA0", 44210, 45458)
    server = ClusterMember("srv1", "server", "ready" if state == "serving" else "paused", "runpod:srv1",
                           "0.5.0-dev (build 1, commit 0c1e570)",
                           "" if state == "serving" else "backend 127.0.0.1:60152 is unreachable",
                           links=(("bk1", "up", ""), ("bk2", "up", "")))
    return ClusterRow("cluster:c1", "c1", state, detail, "bartowski/Llama-3.3-70B-Instruct-GGUF:Q4_K_M", 16384,
                      server=server, backends=(
                          ClusterMember("bk1", "backend", "ready", "runpod:bk1", server.build, devices=(device,),
                                        budgets_mib=(40000,), link_state="up"),
                          ClusterMember("bk2", "backend", "ready", "runpod:bk2", server.build, devices=(device,),
                                        link_state="up")))


class ClustersInProcess(InProcessServices):
    """InProcessServices with one remembered cluster whose members are three of its pods."""

    def __init__(self, cluster: ClusterRow | None = None) -> None:
        super().__init__([*cluster_pods(), *sample_pods()])
        self.cluster = cluster or sample_cluster()

    def list_clusters(self) -> ClusterListing:
        self.calls.append(("list_clusters",))
        return ClusterListing(rows=[self.cluster] if self.cluster else [])

    def stop_cluster(self, name: str) -> str:
        self.calls.append(("stop_cluster", name))
        return f"cluster {name}: stopped srv1, bk1, bk2"

    def terminate_cluster(self, name: str) -> str:
        self.calls.append(("terminate_cluster", name))
        self.cluster = None
        return f"cluster {name}: terminated srv1, bk1, bk2; the cluster is forgotten"


async def wait_for(pilot, condition, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"condition not reached; screen {pilot.app.screen!r}")


def table(app) -> PodTable:
    return app.screen.query_one(PodTable)


def names(app) -> list[str]:
    t = table(app)
    return [t.rows_by_key[t.coordinate_to_cell_key((i, 0)).row_key.value].name for i in range(t.row_count)]


async def grouped(pilot) -> None:
    await wait_for(pilot, lambda: pilot.app.screen.query(PodTable) and pilot.app.screen.refreshed_once
                   and pilot.app.screen.clusters.rows and "c1" in names(pilot.app))


def select(app, name: str) -> None:
    table(app).move_cursor(row=names(app).index(name))


def app_with(services=None):
    return build_app(services or ClustersInProcess(), refresh_seconds=3600)


def test_main_screen_with_a_cluster_group(snap_compare):
    assert snap_compare(app_with(), terminal_size=SIZE, run_before=grouped)


async def test_members_show_only_in_their_group_and_the_filter_keeps_the_group_whole():
    app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await grouped(pilot)
        assert names(app) == ["c1", "srv1", "bk1", "bk2", "llama-70b", "qwen-small", "homebox"]
        assert "5 running · $4.01/hr" in str(app.screen.query_one("#summary").render())  # each pod counted once
        backend = table(app).rows_by_key["member:c1/1"]
        assert isinstance(backend, MemberRow) and backend.pod.name == "c1-backend-1"
        assert "CUDA0 44210/45458 MiB free · APP_MEM 40000 MiB" in str(table(app).get_cell("member:c1/1", "model"))
        assert "no APP_MEM" in str(table(app).get_cell("member:c1/2", "model"))
        await pilot.press("slash", *"bk2")
        await wait_for(pilot, lambda: names(app) == ["c1", "srv1", "bk1", "bk2"])
        await pilot.press("escape")
        await pilot.press("slash", *"homebox")
        await wait_for(pilot, lambda: names(app) == ["homebox"])


async def test_stop_and_terminate_act_on_the_whole_cluster_after_its_name_is_typed():
    services = ClustersInProcess()
    app = app_with(services)
    async with app.run_test(size=SIZE) as pilot:
        await grouped(pilot)
        select(app, "c1")
        await pilot.press("s")
        await wait_for(pilot, lambda: ("stop_cluster", "c1") in services.calls)
        assert not any(call[0] == "stop" for call in services.calls)
        await pilot.press("D")
        await wait_for(pilot, lambda: shown(app.screen, ConfirmTerminateCluster))
        assert "srv1, bk1, bk2" in str(app.screen.query_one("#confirm-body").render())
        await pilot.press(*"c", "enter")           # a wrong name does nothing
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmTerminateCluster)
        await pilot.press("backspace", *"c1", "enter")
        await wait_for(pilot, lambda: ("terminate_cluster", "c1") in services.calls)
        await wait_for(pilot, lambda: "c1" not in names(app))
        assert not any(call[0] == "terminate" for call in services.calls)


async def test_swap_and_fit_go_to_the_server_and_a_backend_row_says_why_not():
    services = ClustersInProcess()
    app = app_with(services)
    async with app.run_test(size=SIZE) as pilot:
        await grouped(pilot)
        select(app, "bk1")
        await pilot.press("m", "c")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, SwapDialog)
        said = [n.message for n in app._notifications]
        assert any("bk1 is an RPC backend" in m and "a swap runs on the server" in m for m in said)
        assert any("the context fit runs on the server" in m for m in said)
        select(app, "c1")
        await pilot.press("m")
        await wait_for(pilot, lambda: shown(app.screen, SwapDialog))
        assert app.screen.pod.key == "runpod:srv1"
        assert "restarts llama-server --rpc on the server across 2 backend(s)" in \
            str(app.screen.query_one("#swap-note").render())
        app.screen.query_one("#model").value = "tiny-b.gguf"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.outcome == "ok")
        assert ("swap", "runpod:srv1", "tiny-b.gguf") in services.calls


async def test_details_of_a_paused_cluster_say_why_and_each_backends_memory():
    app = app_with(ClustersInProcess(sample_cluster("paused: bk2", "llama-server is paused on bk2: …")))
    async with app.run_test(size=SIZE) as pilot:
        await grouped(pilot)
        assert "cluster c1 paused: bk2 — llama-server is paused on bk2" in str(app.screen.query_one("#summary").render())
        assert "backend 127.0.0.1:60152 is unreachable" in str(table(app).get_cell("member:c1/0", "model"))
        select(app, "c1")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RowDetails) and app.screen.is_mounted)
        text = str(app.screen.query_one("#details-text").render())
        assert "paused: bk2" in text and "bk1 up" in text and "0.5.0-dev (build 1, commit 0c1e570)" in text
        assert "CUDA0 44210/45458 MiB free · APP_MEM 40000 MiB" in text


class PodsLateInProcess(ClustersInProcess):
    """The first pods listing arrives after the first cluster listing, which therefore matched no pod
    (as the real façade does: members match the pods listed last)."""

    def list_clusters(self) -> ClusterListing:
        listing = super().list_clusters()
        if ("list_pods_done",) in self.calls:
            return listing
        row = listing.rows[0]
        unmatched = lambda m: replace(m, pod_key="")   # noqa: E731
        return ClusterListing(rows=[replace(row, server=unmatched(row.server),
                                            backends=tuple(unmatched(b) for b in row.backends))])

    def list_pods(self) -> PodListing:
        listing = super().list_pods()
        self.calls.append(("list_pods_done",))
        return listing


async def test_the_group_claims_its_pods_once_the_first_pods_listing_arrives():
    services = PodsLateInProcess()
    services.block_listing.set()   # the pods listing waits; the clusters answer first
    app = app_with(services)       # refreshes every hour: only the first listing can fix it
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: ("list_clusters",) in services.calls)
        services.release.set()
        await wait_for(pilot, lambda: pilot.app.screen.refreshed_once
                       and names(app) == ["c1", "srv1", "bk1", "bk2", "llama-70b", "qwen-small", "homebox"])
        assert services.calls.count(("list_clusters",)) >= 2


async def test_an_instant_clusters_member_is_not_stopped_or_terminated_alone():
    services = ClustersInProcess(replace(sample_cluster(), kind="instant"))
    app = app_with(services)
    async with app.run_test(size=SIZE) as pilot:
        await grouped(pilot)
        select(app, "bk1")
        await pilot.press("s", "D", "r")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, (ConfirmTerminateCluster, ConfirmTerminate))
        said = [n.message for n in app._notifications]
        for verb in ("stop", "terminate", "resume"):
            assert any(f"member of Runpod Instant Cluster c1: Runpod {verb}s its members only with the whole "
                       "cluster" in m for m in said), verb
        assert not any(call[0] in ("stop", "terminate", "resume") for call in services.calls)

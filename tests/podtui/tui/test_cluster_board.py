"""The TUI's cluster façade (podtui.services.dashboard_clusters): how cluster_status's answer reads as
one group, and stop / terminate through the CLI's own stop_or_terminate against the Runpod REST
double (it says it is a double and checks every body against the published spec). The states a real
cluster reaches (serving, paused naming a killed backend) are checked on real parts in
test_cluster_wired.py; the ones below (links down, an unreachable server, a direct cluster) take
seconds to reach for real (a frozen link: ~8 s, tests/podtui/cluster/), so their answers are written
here in cluster_status's documented shape."""

from __future__ import annotations

import pytest

from podtui.errors import PodtuiError
from podtui.services import cluster as clusters
from podtui.services.cluster import ClusterProblem
from podtui.services.dashboard import ProviderServices
from podtui.services.dashboard_clusters import ClusterBoard, cluster_row, whole_state
from podtui.services.front import PodRow
from podtui.services.pods import PodService

pytestmark = pytest.mark.timeout(60)


def answer(server_state="ready", links=("up", "up"), last_error=None, backend_states=("ready", "ready"),
           direct=False, kind="pods") -> dict:
    """cluster_status's answer for server `srv` and backends `b1`, `b2` (its docstring's shape)."""
    endpoints = ["127.0.0.1:60151", "127.0.0.1:60152"]
    return {"name": "c1", "direct": direct, "kind": kind,
            "server": {"ref": "srv", "state": server_state, "build": "0.5.0-dev (build 1, commit 0c1e570)",
                       "last_error": last_error,
                       "links": [] if direct else [{"name": f"b{i + 1}", "endpoint": e, "state": s, "for_s": 3,
                                                    "restarts": 0, "last_error": "" if s == "up" else "ssh exited 255"}
                                                   for i, (e, s) in enumerate(zip(endpoints, links))],
                       "backends": [{"endpoint": e, "state": "answers", "link": f"b{i + 1}", "link_state": s}
                                    for i, (e, s) in enumerate(zip(endpoints, links))]},
            "backends": [{"ref": f"b{i + 1}", "state": s, "build": "0.5.0-dev (build 1, commit 0c1e570)",
                          "uptime_s": 60, "devices": [{"name": "CPU", "description": "CPU", "total_mib": 24105,
                                                       "free_mib": 24000}],
                          "memory_budget_mib": 400, "last_error": None} for i, s in enumerate(backend_states)]}


def test_the_whole_reads_serving_paused_links_down_or_unreachable():
    assert whole_state(answer()) == ("serving", "")
    paused = {"kind": "backend_unreachable", "message": "backend 127.0.0.1:60152 is unreachable",
              "backend": "127.0.0.1:60152", "backends_down": ["127.0.0.1:60152"]}
    word, why = whole_state(answer("paused", last_error=paused))
    assert word == "paused: b2" and "backend 127.0.0.1:60152 is unreachable" in why
    word, why = whole_state(answer("ready", links=("up", "down")))
    assert word == "links down: b2" and "b2 down (ssh exited 255)" in why
    word, why = whole_state(answer("unreachable", last_error={"message": "connection refused"}))
    assert word == "unreachable" and "connection refused" in why
    assert whole_state(answer(backend_states=("ready", "unreachable")))[1].endswith("the agent of b2 cannot be asked")
    assert whole_state(answer("starting"))[0] == "starting"
    assert whole_state(answer(direct=True))[0] == "serving"   # a direct cluster has no links to be down


def test_members_find_their_pod_rows_and_an_instant_clusters_members_their_runpod_key():
    rows = [PodRow(key="ssh:srv", name="srv", provider="ssh", status="RUNNING", model="tiny.gguf", ctx=1024),
            PodRow(key="runpod:x1", name="b1", provider="runpod", status="RUNNING")]
    row = cluster_row(answer(), rows)
    assert [m.pod_key for m in row.members] == ["ssh:srv", "runpod:x1", ""]
    assert (row.model, row.ctx) == ("tiny.gguf", 1024)          # from the server's pod row
    assert row.backends[0].budgets_mib == (400,) and row.backends[0].devices[0].free_mib == 24000
    instant = cluster_row(answer(kind="instant", direct=True), [], runpod="runpod")
    assert [m.pod_key for m in instant.members] == ["runpod:srv", "runpod:b1", "runpod:b2"]


def test_a_cluster_that_cannot_be_asked_is_a_problem_line():
    for name in ("ok", "half-launched"):
        clusters.save_cluster({"name": name, "server": "srv", "backends": ["b1", "b2"], "direct": False})

    def status_of(name: str) -> dict:
        if name == "half-launched":
            raise ClusterProblem("cluster half-launched has no known members", "delete it")
        return {**answer(), "name": name}

    listing = ClusterBoard(status_of).list([])
    assert [row.name for row in listing.rows] == ["ok"]
    assert listing.problems == ["cluster half-launched: cluster half-launched has no known members"]


@pytest.fixture
def runpod_cluster(runpod_double, provider):
    pods = [runpod_double.add_pod(name) for name in ("c1-backend-1", "c1-backend-2", "c1-server")]
    clusters.save_cluster({"name": "c1", "server": pods[2]["id"], "backends": [p["id"] for p in pods[:2]],
                           "direct": False})
    return [p["id"] for p in pods]


def test_stop_and_terminate_go_through_the_clis_stop_or_terminate_server_first(runpod_double, provider,
                                                                                runpod_cluster):
    services = ProviderServices([PodService(provider)])
    backend_1, backend_2, server = runpod_cluster
    text = services.stop_cluster("c1")
    assert runpod_double.stops() == [server, backend_1, backend_2]
    assert text == f"cluster c1: stopped {server}, {backend_1}, {backend_2} (volumes and pins kept; compute billing stops)"
    text = services.terminate_cluster("c1")
    assert [pod for pod, action in runpod_double.actions if action == "terminate"] == [server, backend_1, backend_2]
    assert text.endswith("the cluster is forgotten") and clusters.load_clusters() == {}


def test_without_a_runpod_key_stopping_a_cluster_says_what_to_do():
    clusters.save_cluster({"name": "c1", "server": "srv", "backends": ["b1"], "direct": False})
    with pytest.raises(PodtuiError) as raised:
        ProviderServices([]).stop_cluster("c1")
    assert "no Runpod API key" in raised.value.title and "s on its row" in raised.value.fix


def test_a_tunnel_to_a_server_the_pod_list_hides_is_shown_on_its_group(runpod_double, provider):
    """An Instant Cluster's server is not in the pod list, so its row cannot carry the tunnel: the
    listing does (the tunnel itself is the pods' code, tested in test_runpod_wired.py)."""
    clusters.save_cluster({"name": "c1", "server": "srv", "backends": ["b1", "b2"], "direct": True,
                           "kind": "instant"})
    services = ProviderServices([PodService(provider)],
                                clusters=ClusterBoard(lambda name: answer(kind="instant", direct=True)))
    services._tunnels["runpod:srv"] = (object(), "http://127.0.0.1:5003/v1")
    row = services.list_clusters().rows[0]
    assert row.server.pod_key == "runpod:srv" and row.server.tunnel_url == "http://127.0.0.1:5003/v1"

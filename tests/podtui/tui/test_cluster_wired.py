"""The TUI on a real RPC cluster on loopback (issue 18): three "pods", each a real sshd with its own host
key and a real `remote-agent daemon` (tests/testbed/rpc_pods.py); two backends run the real
ggml-rpc-server, the server the real llama-server --rpc over the real OpenSSH links its agent owns,
joined by the real `podtui cluster link`. The app is the one `podtui` opens (default wiring): it
lists the cluster as one group, follows the server's and a backend's log, runs the server's fit and
a swap across the backends, carries a chat completion through the tunnel to the server, and shows
the group paused naming a backend that was killed."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest

from podtui.services.front import ClusterRow
from podtui.tui.app import build_app
from podtui.tui.screens.logs import LogsScreen
from podtui.tui.screens.swap import SwapDialog
from podtui.tui.widgets.cluster_rows import MemberRow
from podtui.tui.widgets.pod_table import PodTable
from tests.podtui.tui.helpers import shown
from tests.testbed.cli import run_podtui
from tests.testbed.rpc_pods import start_two_backend_cluster, stop_pods
from tests.testbed.sshd import generate_key, have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"), pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def cluster(llama_bin, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("tui-rpc-pods")
    client_key = generate_key(root / "podtui_key")
    env = {"PODTUI_CONFIG_DIR": str(root / "cfg"), "PODTUI_STATE_DIR": str(root / "state"),
           "SSH_AUTH_SOCK": "", "HOME": str(root / "home")}
    started = start_two_backend_cluster(root, llama_bin, tiny_model, client_key, {**os.environ, **env})
    try:
        out = run_podtui({**os.environ, **env}, "cluster", "link", "server", "backend-a", "backend-b",
                         "--name", "c1", "--json", timeout=80)
        assert out.returncode == 0, out.stderr
        started[2].daemon.wait_for_state({"ready"}, timeout=60)
        yield {"env": env, "a": started[0], "b": started[1], "server": started[2]}
    finally:
        stop_pods(started)


@pytest.fixture
def app(cluster, monkeypatch):
    for name, value in cluster["env"].items():   # the app reads podtui's config where the CLI wrote it
        monkeypatch.setenv(name, value)
    return build_app(refresh_seconds=2, cluster_refresh_seconds=0.5, offer_first_run=False)


async def wait_for(pilot, condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"{what} not reached; screen {pilot.app.screen!r}, errors: {pilot.app.errors_shown}")


def rows(app) -> list:
    table = app.screen.query_one(PodTable)
    return [table.rows_by_key[table.coordinate_to_cell_key((i, 0)).row_key.value] for i in range(table.row_count)]


def group(app) -> ClusterRow | None:
    found = [row for row in rows(app) if isinstance(row, ClusterRow)] if app.screen.query(PodTable) else []
    return found[0] if found else None


def select(app, key: str) -> None:
    table = app.screen.query_one(PodTable)
    table.move_cursor(row=table.get_row_index(key))


def member(app, ref: str) -> MemberRow:
    return next(row for row in rows(app) if isinstance(row, MemberRow) and row.member.ref == ref)


def log_text(app) -> str:
    return "\n".join(app.screen.log_view.buffer.view_rows())


def cell_text(app, key: str, column: str) -> str:
    table = app.screen.query_one(PodTable)
    return str(table.get_cell(key, column))


async def test_the_cluster_is_one_group_with_links_memory_logs_fit_swap_and_a_tunnel(cluster, app, tiny_model_b):
    async with app.run_test(size=(200, 48)) as pilot:
        await wait_for(pilot, lambda: (g := group(app)) is not None and g.state == "serving"
                       and all(m.pod_key for m in g.members) and member(app, "backend-b").pod is not None,
                       what="the cluster serving with its listed members")
        c1 = group(app)
        assert [m.ref for m in c1.members] == ["server", "backend-a", "backend-b"]
        names = [row.name for row in rows(app)]
        assert names[:4] == ["c1", "server", "backend-a", "backend-b"] and len(set(names)) == len(names)  # once each
        assert c1.server.links_up == 2 and not c1.direct and c1.model.endswith(".gguf")
        assert cell_text(app, c1.key, "engine") == "linked 2/2 up"
        assert cell_text(app, member(app, "server").key, "engine") == "ready · links 2/2 up"
        for ref, budget in (("backend-a", 400), ("backend-b", 300)):
            backend = member(app, ref).member
            assert backend.budgets_mib == (budget,) and backend.devices and backend.devices[0].total_mib > 0
            text = cell_text(app, member(app, ref).key, "model")
            assert f"{backend.devices[0].free_mib}/{backend.devices[0].total_mib} MiB free" in text
            assert f"APP_MEM {budget} MiB" in text

        select(app, c1.key)                       # l on the cluster row: the server's engine log
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen))
        await wait_for(pilot, lambda: "RPC" in log_text(app), what="the server's log")
        await pilot.press("escape")
        select(app, member(app, "backend-a").key)  # on a backend row: its ggml-rpc-server's output
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen))
        await wait_for(pilot, lambda: "Starting RPC server" in log_text(app),
                       what="the backend's ggml-rpc-server banner")
        await pilot.press("escape")

        await pilot.press("m")                     # a backend serves no model: said, nothing asked
        await wait_for(pilot, lambda: any("is an RPC backend" in n.message for n in app._notifications),
                       what="the backend's role said")
        assert not app.errors_shown and not isinstance(app.screen, LogsScreen)
        if os.environ.get("PODTUI_TUI_SHOT"):      # a look at the real group, when asked
            app.save_screenshot(os.environ["PODTUI_TUI_SHOT"])

        select(app, c1.key)                        # c: the server's fit across both backends' devices
        await pilot.press("c")
        await wait_for(pilot, lambda: any(n.message.startswith("server: ") and "ctx" in n.message
                                          for n in app._notifications), timeout=60, what="the fit's answer")
        await wait_for(pilot, lambda: group(app).state == "serving", timeout=60, what="serving after the fit")
        print(next(n.message for n in app._notifications if n.message.startswith("server: ")))
        await pilot.press("m")                     # m: engine.swap on the server, across the backends
        await wait_for(pilot, lambda: shown(app.screen, SwapDialog))
        assert "restarts llama-server --rpc on the server across 2 backend(s)" in \
            str(app.screen.query_one("#swap-note").render())
        dialog = app.screen
        dialog.query_one("#model").value = str(tiny_model_b)
        await pilot.press("enter")
        await wait_for(pilot, lambda: dialog.outcome == "ok", timeout=90, what="the swap")
        await pilot.press("escape")
        await wait_for(pilot, lambda: group(app).state == "serving" and group(app).model == str(tiny_model_b),
                       timeout=60, what="serving the swapped model")

        select(app, c1.key)                        # t on the cluster row: the tunnel to the server
        await pilot.press("t")
        services = app.services
        await wait_for(pilot, lambda: services._tunnels, what="the tunnel")
        url = next(iter(services._tunnels.values()))[1]
        api_key = cluster["server"].daemon.api_key()
        request = urllib.request.Request(
            f"{url}/chat/completions",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
            data=json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).encode())
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert json.load(reply)["choices"][0]["message"]["content"] is not None
        await wait_for(pilot, lambda: cell_text(app, group(app).key, "tunnel") == url, what="the tunnel shown")
        await pilot.press("t")
        await wait_for(pilot, lambda: not services._tunnels, what="the tunnel closed")


async def test_a_killed_backend_shows_the_group_paused_naming_it(cluster, app):
    async with app.run_test(size=(200, 48)) as pilot:
        await wait_for(pilot, lambda: (g := group(app)) is not None and g.state == "serving",
                       what="the cluster serving")
        backend = cluster["b"].daemon
        backend.stop()                             # its agent and its ggml-rpc-server, killed
        killed = time.monotonic()
        try:
            await wait_for(pilot, lambda: group(app).state == "paused: backend-b", timeout=40,
                           what="the group paused naming backend-b")
            print(f"paused naming backend-b {time.monotonic() - killed:.1f} s after it was killed: {group(app).detail}")
            assert member(app, "backend-b").member.state == "unreachable"
            assert "backend-b itself is unreachable" in group(app).detail   # its own agent's word beside the server's
            assert "backend-b" in str(app.screen.query_one("#summary").render())
        finally:
            backend.start()
        await wait_for(pilot, lambda: group(app).state == "serving", timeout=60, what="serving again")

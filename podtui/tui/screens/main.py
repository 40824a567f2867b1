"""The main screen: every provider's pods, what they cost, and the keys to act on them; each RPC
cluster as one group in the same table (podtui.tui.widgets.cluster_rows), refreshed in the background
less often than the pods (every member's agent is asked); under them, Runpod Serverless endpoints
(podtui.tui.widgets.endpoint_panel) when the services offer them."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from podtui.tui.host import Hosted
from podtui.tui.screens import flows
from podtui.tui.screens.confirm_delete_endpoint import ConfirmDeleteEndpoint
from podtui.tui.screens.confirm_terminate import ConfirmTerminate, ConfirmTerminateCluster
from podtui.tui.screens.details import PodDetails, RowDetails
from podtui.tui.screens.endpoint_test import EndpointTestDialog
from podtui.services.front import ClusterListing, ClusterRow, PodListing, PodRow
from podtui.tui.widgets.cluster_rows import (acting_pod, cluster_detail_lines, cluster_warnings, grouped_rows,
                                             instant_member_refusal, role_refusal, server_note)
from podtui.tui.widgets.endpoint_panel import EndpointsPanel
from podtui.tui.widgets.endpoint_table import EndpointTable
from podtui.tui.widgets.pod_table import PodTable, summary_text

# The pod keys that mean nothing on an endpoint: hidden (and off) while the endpoints table has focus.
POD_ONLY_ACTIONS = frozenset({"stop", "resume", "terminate", "tunnel", "verify", "swap", "fit", "logs",
                              "details", "filter"})


class MainScreen(Hosted, Screen[None]):
    CSS_PATH = "main.tcss"
    BINDINGS = [
        Binding("n", "launch", "Launch"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("D", "terminate", "Terminate"),
        Binding("t", "tunnel", "Tunnel"),
        Binding("v", "verify", "Verify key"),
        Binding("m", "swap", "Swap model"),
        Binding("c", "fit", "Ctx fit"),
        Binding("l", "logs", "Logs"),
        Binding("L", "own_log", "podtui log", show=False),
        Binding("enter", "details", "Details", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.listing = PodListing()
        self.refreshing = False
        self.refreshed_once = False
        self.clusters = ClusterListing()
        self.clusters_refreshing = False
        self.clusters_failed = ""
        # The clusters were asked before the first pods listing came back: their members matched no
        # pod row ("not listed") and the pods showed twice. Ask again once the pods are known.
        self.clusters_stale = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield PodTable(id="pods")
        yield Input(placeholder="filter pods (name, provider, status, GPU, model); "
                                "enter keeps it, escape clears", id="pod-filter")
        yield Static("loading pods…", id="summary", markup=False)
        if self.app_host.services.offers_endpoints:
            yield EndpointsPanel(id="endpoints-panel")
        yield Footer()

    @property
    def table(self) -> PodTable:
        return self.query_one(PodTable)

    def on_mount(self) -> None:
        self.query_one("#pod-filter").display = False
        self.table.focus()
        self.refresh_pods()
        self.set_interval(self.app_host.refresh_seconds, self.refresh_pods)
        self.refresh_clusters()
        self.set_interval(self.app_host.cluster_refresh_seconds, self.refresh_clusters)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in POD_ONLY_ACTIONS and isinstance(self.focused, EndpointTable))

    @property
    def endpoints_panel(self) -> EndpointsPanel | None:
        found = self.query(EndpointsPanel)
        return found.first() if found else None

    def refresh_all(self) -> None:
        """Pods and endpoints now (after the services changed, e.g. a Runpod key was stored)."""
        self.refresh_pods()
        self.refresh_clusters()
        if panel := self.endpoints_panel:
            panel.refresh_endpoints()

    # ---- live refresh --------------------------------------------------------------------------
    def refresh_pods(self) -> None:
        """Ask every provider for its pods, in the background. A stalled provider never blocks
        the keys, and refreshes do not pile up behind it."""
        if self.refreshing:
            return
        self.refreshing = True
        self.app_host.run_service(self.app_host.services.list_pods, name="list pods",
                             group="pods-refresh", on_done=self.pods_listed,
                             on_error=self.listing_failed)

    def listing_failed(self, title: str, fix: str) -> None:
        # Shown in the summary line, not as a dialog: a refresh every few seconds must not stack
        # dialogs while a provider is down.
        self.refreshing = False
        self.query_one("#summary", Static).update(f"⚠ listing pods failed: {title}"
                                                  + (f" — {fix}" if fix else ""))

    def pods_listed(self, listing: PodListing) -> None:
        self.refreshing = False
        first = not self.refreshed_once
        self.refreshed_once = True
        self.listing = listing
        self.show_listing()
        if first:
            self.clusters_stale = True
            self.refresh_clusters()

    def refresh_clusters(self) -> None:
        """Ask every remembered cluster's members for their state, in the background (one agent
        session per member: slower than the pods, so less often); never piles up."""
        if self.clusters_refreshing:
            return
        self.clusters_refreshing = True
        self.clusters_stale = False
        self.app_host.run_service(self.app_host.services.list_clusters, name="list clusters",
                                  group="clusters-refresh", on_done=self.clusters_listed,
                                  on_error=self.clusters_listing_failed)

    def clusters_listed(self, listing: ClusterListing) -> None:
        self.clusters_refreshing = False
        self.clusters_failed = ""
        self.clusters = listing
        if self.refreshed_once:   # until the pods are listed, the summary says they are loading
            self.show_listing()
        if self.clusters_stale:   # asked while the first pods listing was still on its way
            self.refresh_clusters()

    def clusters_listing_failed(self, title: str, fix: str) -> None:
        self.clusters_refreshing = False   # in the summary line, like the pods' listing
        self.clusters_failed = f"listing clusters failed: {title}" + (f" — {fix}" if fix else "")
        if self.refreshed_once:
            self.show_listing()

    def show_listing(self) -> None:
        field = self.query_one("#pod-filter", Input)
        self.table.pods = list(self.listing.rows)
        self.table.show(grouped_rows(self.listing.rows, self.clusters.rows), field.value if field.display else "")
        problems = [*self.listing.problems, *self.clusters.problems, *cluster_warnings(self.clusters.rows),
                    *([self.clusters_failed] if self.clusters_failed else [])]
        self.query_one("#summary", Static).update(summary_text(self.listing.rows, problems))

    # ---- filter --------------------------------------------------------------------------------
    def action_filter(self) -> None:
        field = self.query_one("#pod-filter", Input)
        field.display = True
        field.focus()

    @on(Input.Changed, "#pod-filter")
    def filter_changed(self) -> None:
        self.show_listing()

    @on(Input.Submitted, "#pod-filter")
    def filter_submitted(self) -> None:
        self.table.focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#pod-filter", Input)
        field.value = ""
        field.display = False
        self.table.focus()
        self.show_listing()

    # ---- pod actions ---------------------------------------------------------------------------
    def selected_pod(self) -> PodRow | None:
        """The pod the selected row stands for (a cluster row: its server); None, said, when none."""
        pod, why = acting_pod(self.table.selected, self.listing.rows)
        if pod is None:
            self.notify(why, severity="warning")
        return pod

    def selected_cluster(self) -> ClusterRow | None:
        row = self.table.selected
        return row if isinstance(row, ClusterRow) else None

    def refused_on_backend(self, what: str) -> bool:
        why = role_refusal(self.table.selected, what)
        return self._refused(why)

    def refused_on_instant_member(self, what: str) -> bool:
        return self._refused(instant_member_refusal(self.table.selected, what))

    def _refused(self, why: str) -> bool:
        if why:
            self.notify(why, severity="warning")
        return bool(why)

    def _act(self, verb: str, call, row: PodRow) -> None:
        self.notify(f"{verb} {row.name}…")
        self.app_host.run_service(call, row.key, name=f"{verb} {row.name}", group="pod-action",
                             on_done=self._action_done)

    def _action_done(self, text: str) -> None:
        self.notify(str(text))
        self.refresh_pods()
        self.refresh_clusters()

    def _act_on_cluster(self, verb: str, call, cluster: ClusterRow) -> None:
        self.notify(f"{verb} cluster {cluster.name} (server first)…")
        self.app_host.run_service(call, cluster.name, name=f"{verb} cluster {cluster.name}", group="pod-action",
                                  on_done=self._action_done)

    def action_stop(self) -> None:
        if self.refused_on_instant_member("stop"):
            return
        if cluster := self.selected_cluster():
            self._act_on_cluster("stop", self.app_host.services.stop_cluster, cluster)
        elif row := self.selected_pod():
            self._act("stop", self.app_host.services.stop, row)

    def action_resume(self) -> None:
        if self.refused_on_instant_member("resume"):
            return
        if cluster := self.selected_cluster():
            self.notify(f"Resume {cluster.name}'s pods one by one (r on each member's row), backends first: "
                        "the server pauses until every backend answers, then starts by itself.",
                        severity="warning")
        elif row := self.selected_pod():
            self._act("resume", self.app_host.services.resume, row)

    def action_tunnel(self) -> None:
        if row := self.selected_pod():
            self._act("tunnel", self.app_host.services.toggle_tunnel, row)

    def action_fit(self) -> None:
        if self.refused_on_backend("the context fit"):
            return
        if row := self.selected_pod():
            self._act("context fit", self.app_host.services.context_fit, row)

    def action_terminate(self) -> None:
        if self.refused_on_instant_member("terminate"):
            return
        if cluster := self.selected_cluster():
            def terminate_cluster(yes: bool | None) -> None:
                if yes:
                    self._act_on_cluster("terminate", self.app_host.services.terminate_cluster, cluster)

            self.app.push_screen(ConfirmTerminateCluster(cluster.name, [m.ref for m in cluster.members]),
                                 terminate_cluster)
            return
        row = self.selected_pod()
        if row is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._act("terminate", self.app_host.services.terminate, row)

        self.app.push_screen(ConfirmTerminate(row.name), confirmed)

    def action_details(self) -> None:
        if cluster := self.selected_cluster():
            self.app.push_screen(RowDetails(cluster, lines=cluster_detail_lines(cluster)))
        elif row := self.selected_pod():
            self.app.push_screen(PodDetails(row))

    def on_data_table_row_selected(self, event: PodTable.RowSelected) -> None:
        if not isinstance(event.data_table, EndpointTable):
            self.action_details()
        elif row := event.data_table.selected:
            self.app.push_screen(RowDetails(row))

    def action_logs(self) -> None:
        """The selected pod's log; a cluster row: its server's (llama-server); a backend's row: its
        agent's (ggml-rpc-server's output)."""
        if self.table.selected is None:
            self.app_host.open_logs(self.app_host.services.log_follower(None))
        elif row := self.selected_pod():
            self.app_host.open_logs(self.app_host.services.log_follower(row.key))

    def action_own_log(self) -> None:
        self.app_host.open_logs(self.app_host.services.log_follower(None))

    def action_verify(self) -> None:
        if row := self.selected_pod():
            flows.verify_host_key(self.app_host, row)

    def action_swap(self) -> None:
        if self.refused_on_backend("a swap"):
            return
        note = server_note(self.table.selected)
        if row := self.selected_pod():
            flows.swap_model(self.app_host, row, note=note)

    def action_launch(self) -> None:
        flows.launch_pod(self.app_host)

    # ---- endpoint dialogs (the panel's other keys act in place) --------------------------------
    def action_endpoint_test(self) -> None:
        if (panel := self.endpoints_panel) and (row := panel.selected_endpoint()):
            self.app.push_screen(EndpointTestDialog(row))

    def action_endpoint_delete(self) -> None:
        panel = self.endpoints_panel
        row = panel.selected_endpoint() if panel else None
        if panel is None or row is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                panel.delete(row)

        self.app.push_screen(ConfirmDeleteEndpoint(row), confirmed)

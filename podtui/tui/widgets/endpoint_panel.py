"""The Serverless endpoints section under the pods (issue 17): the table, its summary line, and the
keys that act on the selected endpoint — wake, test, worker logs, keep-alive, delete.

Its keys apply while the endpoints table has focus (tab moves between the two tables); every
call runs through the app's run_service, so a failure lands in the app's one handler and shows
as the error dialog with its fix. The list refreshes in the background like the pods'. What
opens a dialog (test, delete, details) is the main screen's to do: widgets never import screens.
"""

from __future__ import annotations

from typing import cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from podtui.services.front import EndpointListing, EndpointRow
from podtui.tui.host import AppHost
from podtui.tui.messages import EndpointProgress
from podtui.tui.widgets.endpoint_table import EndpointTable, endpoints_summary

TITLE = "Serverless endpoints  (tab switches between pods and endpoints)"
NO_ENDPOINTS = "no serverless endpoints (create one with `podtui endpoints create NAME --model … --gpu POOL`)"
NEWS_SECONDS = 12.0   # how long a keep-alive notice stays up: it carries what the keep-alive cost


class EndpointsPanel(Vertical):
    BINDINGS = [
        Binding("w", "wake", "Wake"),
        Binding("t", "screen.endpoint_test", "Test chat"),
        Binding("l", "logs", "Worker logs"),
        Binding("k", "keep_warm", "Keep-alive"),
        Binding("D", "screen.endpoint_delete", "Delete"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.listing = EndpointListing()
        self.busy: dict[str, str] = {}       # endpoint id → what runs on it now (a wake), for the summary
        self.refreshing = False
        self.refreshed_once = False

    def compose(self) -> ComposeResult:
        yield Static(TITLE, id="endpoints-title", markup=False)
        yield EndpointTable(id="endpoints")
        yield Static("loading endpoints…", id="endpoints-summary", markup=False)

    @property
    def table(self) -> EndpointTable:
        return self.query_one(EndpointTable)

    @property
    def host(self) -> AppHost:
        return cast(AppHost, self.app)

    def on_mount(self) -> None:
        self.refresh_endpoints()
        self.set_interval(self.host.refresh_seconds, self.refresh_endpoints)

    # ---- live refresh --------------------------------------------------------------------------
    def refresh_endpoints(self) -> None:
        """List the endpoints in the background; a refresh never piles up behind a slow one."""
        if self.refreshing:
            return
        self.refreshing = True
        self.host.run_service(self.host.services.list_endpoints, name="list endpoints",
                              group="endpoints-refresh", on_done=self.endpoints_listed,
                              on_error=self.listing_failed)

    def listing_failed(self, title: str, fix: str) -> None:
        self.refreshing = False   # in the summary line, not as a dialog (a refresh every few seconds)
        self.query_one("#endpoints-summary", Static).update(
            f"⚠ listing endpoints failed: {title}" + (f" — {fix}" if fix else ""))

    def endpoints_listed(self, listing: EndpointListing) -> None:
        self.refreshing = False
        self.refreshed_once = True
        self.listing = listing
        for news in listing.news:
            self.host.notify(news, title="endpoints", timeout=NEWS_SECONDS)
        self.show_listing()

    def show_listing(self) -> None:
        summary = self.query_one("#endpoints-summary", Static)
        self.table.display = not self.listing.note
        if self.listing.note:
            summary.update(self.listing.note)
            return
        self.table.show(self.listing.rows)
        if not self.listing.rows and not self.listing.problems:
            summary.update(NO_ENDPOINTS)
        else:
            summary.update(endpoints_summary(self.listing.rows, self.listing.problems, self.busy))

    # ---- actions on the selected endpoint ------------------------------------------------------
    def selected_endpoint(self) -> EndpointRow | None:
        row = self.table.selected if self.table.display else None
        if row is None:
            self.notify("Select an endpoint first (none is listed or none is selected).", severity="warning")
        return row

    def action_wake(self) -> None:
        row = self.selected_endpoint()
        if row is None:
            return
        if row.key in self.busy:
            self.notify(f"{row.label} is already being woken.", severity="warning")
            return
        self.busy[row.key] = f"⏳ waking {row.label}…"
        self.show_listing()
        self.notify(f"Waking {row.label}: a worker answers the cheapest job there is (its model list); "
                    "progress below and in the activity log (L).")
        self.host.run_service(self.host.services.wake_endpoint, row.key,
                              lambda phase, fraction, detail: self.post_message(EndpointProgress(row.key, detail)),
                              name=f"wake {row.label}", group="endpoint-wake",
                              on_done=lambda text: self._wake_over(row.key, str(text)),
                              on_error=lambda title, fix: self._wake_over(row.key, None, title, fix))

    def on_endpoint_progress(self, message: EndpointProgress) -> None:
        if message.key in self.busy:
            self.busy[message.key] = f"⏳ waking {self._label(message.key)}: {message.detail}"
            self.show_listing()

    def _wake_over(self, key: str, text: str | None, title: str = "", fix: str = "") -> None:
        self.busy.pop(key, None)
        if text is not None:
            self.host.notify(text, title="endpoint warm", timeout=NEWS_SECONDS)
        else:
            self.host.show_error(title, fix, context=f"wake {self._label(key)}")
        self.refresh_endpoints()

    def _label(self, key: str) -> str:
        row = next((r for r in self.listing.rows if r.key == key), None)
        return row.label if row else key

    def action_logs(self) -> None:
        if row := self.selected_endpoint():
            self.host.open_logs(self.host.services.endpoint_log_follower(row.key))

    def action_keep_warm(self) -> None:
        if row := self.selected_endpoint():
            self.notify(f"switching keep-alive {'off' if row.keep_warm else 'on'} for {row.label}…")
            self._act(self.host.services.toggle_keep_warm, row, "keep-alive")

    def delete(self, row: EndpointRow) -> None:
        """Delete the endpoint (the screen asked for its name first)."""
        self.notify(f"deleting {row.label}…")
        self._act(self.host.services.delete_endpoint, row, "delete")

    def _act(self, call, row: EndpointRow, verb: str) -> None:
        self.host.run_service(call, row.key, name=f"{verb} {row.label}", group="endpoint-action",
                              on_done=self._action_done)

    def _action_done(self, text: str) -> None:
        self.host.notify(str(text), timeout=NEWS_SECONDS)
        self.refresh_endpoints()

"""`D` on a Serverless endpoint: deleting it is for good and takes its bound template along
(REST v2 DELETE, SERVERLESS.md §4.2), so the user types the endpoint's name."""

from __future__ import annotations

from podtui.services.front import EndpointRow
from podtui.tui.screens.confirm_typed import TypedNameConfirm


class ConfirmDeleteEndpoint(TypedNameConfirm):
    BUTTON_ID = "delete"

    def __init__(self, row: EndpointRow) -> None:
        active = sum(row.workers.get(state, 0) for state in ("running", "idle", "initializing"))
        workers = f"its {active} worker(s) are terminated, " if active else ""
        super().__init__(row.label, title=f"Delete endpoint {row.label} ({row.key})?",
                         body=("Runpod deletes the endpoint AND the template bound to it, for good: "
                               f"{workers}its queued and running jobs are cancelled, and clients using its URL "
                               "get errors from then on. Type the endpoint's name to confirm."),
                         button="Delete")
        self.row = row

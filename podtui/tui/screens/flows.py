"""Flows that chain a background call, a dialog and another call (verify, swap, launch).

Each step's blocking call goes through app.run_service, so failures land in the app's one
handler; the dialogs only decide.
"""

from __future__ import annotations

from podtui.services.front import HostKeyCheck, PodRow
from podtui.tui.host import AppHost
from podtui.tui.screens.hostkey import PIN_UNVERIFIED, PIN_VERIFIED, HostKeyDialog
from podtui.tui.screens.launch import LaunchScreen
from podtui.tui.screens.swap import SwapDialog


def verify_host_key(app: AppHost, row: PodRow) -> None:
    def checked(check: HostKeyCheck) -> None:
        def decided(choice: str | None) -> None:
            if choice in (PIN_VERIFIED, PIN_UNVERIFIED):
                app.run_service(app.services.pin_host_key, row.key, check,
                                name=f"pin host key of {row.name}", group="pod-action",
                                on_done=lambda text: app.notify(str(text)),
                                verified=choice == PIN_VERIFIED)

        app.push_screen(HostKeyDialog(check), decided)

    app.notify(f"Reading {row.name}'s host key and printed fingerprints…")
    app.run_service(app.services.host_key_check, row.key, name=f"host key of {row.name}",
                    group="pod-action", on_done=checked)


def swap_model(app: AppHost, row: PodRow, note: str = "") -> None:
    """The swap dialog for row's pod, once its agent listed its models; note: what differs on this
    pod (an RPC cluster's server), shown under the title."""
    def listed(models) -> None:
        app.push_screen(SwapDialog(row, list(models), note=note))

    app.run_service(app.services.models_on_pod, row.key, name=f"models on {row.name}",
                    group="pod-action", on_done=listed)


def launch_pod(app: AppHost) -> None:
    app.run_service(app.services.gpu_catalog, name="GPU catalog", group="launch",
                    on_done=lambda gpus: app.push_screen(LaunchScreen(list(gpus))))

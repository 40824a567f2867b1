"""`D` on a pod: terminating deletes the pod and its volume, so the user types the pod's name."""

from __future__ import annotations

from podtui.tui.screens.confirm_typed import TypedNameConfirm


class ConfirmTerminate(TypedNameConfirm):
    BUTTON_ID = "terminate"

    def __init__(self, pod_name: str) -> None:
        super().__init__(pod_name, title=f"Terminate {pod_name}?",
                         body="This deletes the pod and its volume: downloaded models and its host "
                              "keys are gone. Type the pod's name to confirm.",
                         button="Terminate")
        self.pod_name = pod_name

"""`D` on a pod or a cluster: terminating deletes pods and volumes, so the user types the name."""

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


class ConfirmTerminateCluster(TypedNameConfirm):
    """`D` on a cluster row: every Runpod member goes (server first), so the cluster's name is typed."""

    BUTTON_ID = "terminate"

    def __init__(self, cluster_name: str, members: list[str]) -> None:
        super().__init__(cluster_name, title=f"Terminate cluster {cluster_name}?",
                         body=f"This deletes every Runpod pod of the cluster ({', '.join(members)}), server "
                              "first, with their volumes: downloaded models and host keys are gone, and podtui "
                              "forgets the cluster. Members that are added SSH hosts are left running. "
                              "Type the cluster's name to confirm.",
                         button="Terminate")
        self.cluster_name = cluster_name

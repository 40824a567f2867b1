"""`?`: every key of the main screen (pods, RPC clusters, Serverless endpoints) and the logs screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

MAIN_KEYS = [
    ("n", "launch a pod"), ("s", "stop the pod (keeps its volume)"), ("r", "resume a stopped pod"),
    ("D", "terminate (type the pod's name to confirm)"), ("t", "tunnel on/off"),
    ("v", "verify and pin the host key"), ("m", "swap the model"), ("c", "context fit"),
    ("l", "the pod's logs"), ("L", "podtui's own activity log"), ("enter", "pod details"),
    ("/", "filter pods"), ("?", "this help"), ("q", "quit"),
]
CLUSTER_KEYS = [
    ("t", "tunnel to the server's llama-server"),
    ("m", "swap on the server (restarts its llama-server)"),
    ("c", "context fit across every backend's device"),
    ("l", "server's log; backend row: its ggml-rpc-server"),
    ("s", "stop its Runpod pods, server first"),
    ("D", "terminate them (type the cluster's name)"),
    ("enter", "links, each backend's memory, errors"),
]
ENDPOINT_KEYS = [
    ("tab", "move between the pods and the endpoints table"),
    ("w", "wake a worker; shows the cold-start delay"),
    ("t", "test: stream a short chat through /openai/v1"),
    ("l", "the endpoint's worker logs"),
    ("k", "keep-alive on/off (one worker, 10 min, billed)"),
    ("D", "delete with its bound template (type its name)"),
    ("enter", "endpoint details, warnings and queue diagnosis"),
]
LOG_KEYS = [
    ("space", "pause / follow"), ("/", "filter (!text hides lines containing text)"),
    ("x", "keep context: show lines around matches"), ("w", "wrap long lines"),
    ("s", "save the shown lines to a file"), ("g / G", "top / end (end resumes following)"),
    ("escape", "back"),
]


def _table(keys: list[tuple[str, str]]) -> str:
    return "\n".join(f"  {key:<7} {what}" for key, what in keys)


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="wide"):   # scrolls in a small terminal
            yield Static("Keys", classes="dialog-title")
            with Horizontal(id="help-columns"):
                yield Static("Main screen\n" + _table(MAIN_KEYS) +
                             "\n\nRPC cluster (its row; member rows act as pods)\n" + _table(CLUSTER_KEYS),
                             markup=False, id="help-text", classes="help-column")
                yield Static("Serverless endpoints (their table focused)\n" + _table(ENDPOINT_KEYS) +
                             "\n\nLogs screen\n" + _table(LOG_KEYS), markup=False, id="help-more",
                             classes="help-column")

    def action_close(self) -> None:
        self.dismiss(None)

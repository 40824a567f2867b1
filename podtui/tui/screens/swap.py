"""`m`: swap the pod's model. Lists the models already on the pod, takes a MODEL, shows download,
fit and load progress, then the result — or the classified error and the rollback the agent did."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, ProgressBar, Static

from podtui.tui.host import Hosted
from podtui.tui.messages import SwapProgress
from podtui.services.front import ModelOnPod, PodRow

PHASES = ("download", "fit", "load")


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


class SwapDialog(Hosted, ModalScreen[str | None]):
    CSS_PATH = "dialogs.tcss"
    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, pod: PodRow, models: list[ModelOnPod], note: str = "") -> None:
        super().__init__()
        self.pod = pod
        self.note = note      # what differs on this pod (an RPC cluster's server)
        self.models = models
        self.swapping = False
        self.outcome: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(f"Swap the model on {self.pod.name} (now: {self.pod.model or '—'})",
                         classes="dialog-title", markup=False)
            if self.note:
                yield Static(self.note, id="swap-note", markup=False)
            table = DataTable(id="models", cursor_type="row")
            table.add_columns("model on the pod", "size", "quant", "last used")
            for model in self.models:
                table.add_row(model.name, format_size(model.size_bytes), model.quant or "—",
                              model.last_used or "—", key=model.name)
            yield table
            yield Input(placeholder="MODEL: org/repo:QUANT, org/repo/file.gguf, an HF URL, or a "
                                    "name above", id="model")
            for phase in PHASES:
                with Horizontal(classes="progress-row"):
                    yield Static(phase, classes="label")
                    yield ProgressBar(total=1.0, show_eta=False, id=f"progress-{phase}")
            yield Static("", id="swap-result", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Close", id="close")
                yield Button("Swap", id="swap", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#model", Input).focus()

    @on(DataTable.RowSelected, "#models")
    def model_picked(self, event: DataTable.RowSelected) -> None:
        self.query_one("#model", Input).value = str(event.row_key.value)

    @on(Input.Submitted, "#model")
    @on(Button.Pressed, "#swap")
    def start_swap(self) -> None:
        model = self.query_one("#model", Input).value.strip()
        result = self.query_one("#swap-result", Static)
        if self.swapping:
            return
        if not model:
            result.update("Type a MODEL or pick one of the pod's models first.")
            result.set_classes("bad")
            return
        self.swapping = True
        self.query_one("#swap", Button).disabled = True
        for phase in PHASES:
            self.query_one(f"#progress-{phase}", ProgressBar).update(total=1.0, progress=0)
        result.update(f"Swapping to {model}… the old model keeps serving until the new one is "
                      "ready.")
        result.set_classes("")
        self.app_host.run_service(self.app_host.services.swap_model, self.pod.key, model, self.report,
                             name=f"swap {self.pod.name}", group="swap",
                             on_done=self.swap_done, on_error=self.swap_failed)

    def report(self, phase: str, fraction: float | None, detail: str = "") -> None:
        """Called from the worker thread by the service; crosses to the UI as a message."""
        self.post_message(SwapProgress(phase, fraction, detail))

    def on_swap_progress(self, message: SwapProgress) -> None:
        if message.phase not in PHASES or not self.swapping:
            return   # a late event (the rollback's "ready") after the result is already shown
        bar = self.query_one(f"#progress-{message.phase}", ProgressBar)
        if message.fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=1.0, progress=max(0.0, min(1.0, message.fraction)))

    def swap_done(self, text: str) -> None:
        self.swapping = False
        self.outcome = "ok"
        for phase in PHASES:
            self.query_one(f"#progress-{phase}", ProgressBar).update(total=1.0, progress=1.0)
        result = self.query_one("#swap-result", Static)
        result.update(f"✔ {text}")
        result.set_classes("ok")
        self.query_one("#swap", Button).disabled = False

    def swap_failed(self, title: str, fix: str) -> None:
        self.swapping = False
        self.outcome = "failed"
        # The new model never loaded; a rollback's "ready" (the old model serving again) must
        # not leave the load bar looking full.
        self.query_one("#progress-load", ProgressBar).update(total=1.0, progress=0)
        result = self.query_one("#swap-result", Static)
        result.update(f"✘ {title}" + (f"\nFix: {fix}" if fix else ""))
        result.set_classes("bad")
        self.query_one("#swap", Button).disabled = False

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(self.outcome)

"""`n`: launch a pod — GPU (memory, price), MODEL (checked as typed), a pre-flight context fit,
CTX, engine, volume size and idle stop; then progress while it boots, prints its fingerprints and
the tunnel opens."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static

from podtui.tui.host import Hosted
from podtui.services.inputs import ctx_option, ctx_problem, model_problem
from podtui.tui.messages import SwapProgress
from podtui.services.front import GpuChoice
from podtui.display import format_price

ENGINES = [("llama-server (llama.cpp)", "llama-server"), ("koboldcpp", "koboldcpp")]


class LaunchScreen(Hosted, Screen[str | None]):
    CSS_PATH = "launch.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+l", "launch", "Launch")]

    def __init__(self, gpus: list[GpuChoice]) -> None:
        super().__init__()
        self.gpus = gpus
        self.launching = False
        self._fit_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="launch-form"):
            yield Static("Launch a pod", classes="dialog-title")
            table = DataTable(id="gpus", cursor_type="row")
            table.add_columns("GPU", "memory", "$/hr", "")
            for gpu in self.gpus:
                table.add_row(gpu.name, f"{gpu.memory_gb:g} GB", format_price(gpu.price_per_hour),
                              "" if gpu.available else "unavailable", key=gpu.name)
            yield table
            yield Label("MODEL")
            yield Input(placeholder="org/repo:Q4_K_M, org/repo/file.gguf or an HF URL",
                        id="model")
            yield Static("", id="model-problem", markup=False)
            yield Static("", id="fit-line", markup=False)
            with Horizontal(classes="fields"):
                with Vertical():
                    yield Label("CTX (auto or tokens)")
                    yield Input("auto", id="ctx")
                with Vertical():
                    yield Label("engine")
                    yield Select(ENGINES, value="llama-server", allow_blank=False, id="engine")
                with Vertical():
                    yield Label("volume GB")
                    yield Input("50", id="volume", type="integer")
                with Vertical():
                    yield Label("idle stop (min, 0 = never)")
                    yield Input("30", id="idle", type="integer")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Launch", id="launch", variant="primary")
            yield Static("", id="launch-progress", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#model", Input).focus()

    @property
    def gpu(self) -> GpuChoice | None:
        table = self.query_one("#gpus", DataTable)
        if not self.gpus or table.row_count == 0:
            return None
        return self.gpus[table.cursor_row]

    # ---- checks as the user types --------------------------------------------------------------
    @on(Input.Changed, "#model")
    def model_changed(self, event: Input.Changed) -> None:
        problem = model_problem(event.value) if event.value else None
        self.query_one("#model-problem", Static).update(f"✘ {problem}" if problem else "")
        if self._fit_timer:
            self._fit_timer.stop()
        if event.value and not problem:
            self._fit_timer = self.set_timer(0.6, self.preflight)

    @on(DataTable.RowHighlighted, "#gpus")
    def gpu_changed(self) -> None:
        model = self.query_one("#model", Input).value
        if model and not model_problem(model):
            self.preflight()

    def preflight(self) -> None:
        gpu, model = self.gpu, self.query_one("#model", Input).value.strip()
        if gpu is None:
            return
        line = self.query_one("#fit-line", Static)
        line.update(f"checking how much context {model} fits on {gpu.name}…")
        self.app_host.run_service(self.app_host.services.preflight_fit, model, gpu.name,
                             name="pre-flight fit", group="preflight", exclusive=True,
                             on_done=lambda text: line.update(f"✔ {text}"),
                             on_error=lambda title, fix: line.update(
                                 f"pre-flight fit unavailable: {title}"))

    # ---- launch --------------------------------------------------------------------------------
    def spec(self) -> dict | str:
        """The launch request, or what is wrong with the form."""
        gpu = self.gpu
        model = self.query_one("#model", Input).value.strip()
        ctx = self.query_one("#ctx", Input).value.strip() or "auto"
        if gpu is None:
            return "pick a GPU"
        if problem := model_problem(model):
            return problem
        if problem := ctx_problem(ctx):
            return f"CTX: {problem}"
        volume = self.query_one("#volume", Input).value or "0"
        idle = self.query_one("#idle", Input).value or "0"
        if int(volume) < 10:
            return "the volume needs at least 10 GB for models and host keys"
        return {"gpu": gpu.name, "model": model, "ctx": str(ctx_option(ctx)),
                "engine": self.query_one("#engine", Select).value,
                "volume_gb": int(volume), "idle_stop_minutes": int(idle)}

    @on(Button.Pressed, "#launch")
    def action_launch(self) -> None:
        if self.launching:
            return
        progress = self.query_one("#launch-progress", Static)
        spec = self.spec()
        if isinstance(spec, str):
            progress.update(f"✘ {spec}")
            return
        self.launching = True
        self.query_one("#launch", Button).disabled = True
        progress.update("launching…")
        self.app_host.run_service(self.app_host.services.launch, spec, self.report, name="launch pod",
                             group="launch", on_done=self.launched, on_error=self.failed)

    def report(self, phase: str, fraction: float | None, detail: str = "") -> None:
        self.post_message(SwapProgress(phase, fraction, detail))

    def on_swap_progress(self, message: SwapProgress) -> None:
        share = "" if message.fraction is None else f" {message.fraction:.0%}"
        self.query_one("#launch-progress", Static).update(
            f"{message.phase}{share} {message.detail}".rstrip())

    def launched(self, text: str) -> None:
        self.app.notify(str(text), title="Pod launched")
        self.dismiss(str(text))

    def failed(self, title: str, fix: str) -> None:
        self.launching = False
        self.query_one("#launch", Button).disabled = False
        self.query_one("#launch-progress", Static).update(
            f"✘ {title}" + (f"\nFix: {fix}" if fix else ""))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

"""The podtui Textual application. One factory, `build_app`, builds it for the CLI and the tests.

All blocking work (provider APIs, SSH, the agent) runs through `PodtuiApp.run_service`: a worker
that awaits a daemon thread. Results and failures come back as `Worker.StateChanged`, handled by
ONE method here: failures become an error dialog with the fix, results go to the callback the
caller named. Screens never catch exceptions themselves.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from textual import on
from textual.app import App
from textual.worker import Worker, WorkerState

from podtui import paths
from podtui.tui.background import in_daemon_thread
from podtui.services.follow import LineFollower
from podtui.tui.log_buffer import DEFAULT_CAPACITY
from podtui.tui.screens.error_dialog import ErrorDialog
from podtui.tui.screens.first_run import FirstRunScreen
from podtui.tui.screens.help import HelpScreen
from podtui.tui.screens.logs import LogsScreen
from podtui.tui.screens.main import MainScreen
from podtui.services.front import TuiServices, describe_error

activity = logging.getLogger("podtui.tui")


class PodtuiApp(App[None]):
    TITLE = "podtui"
    CSS_PATH = "app.tcss"
    BINDINGS = [("question_mark", "help", "Help")]

    def __init__(self, services: TuiServices, *, refresh_seconds: float = 5.0,
                 cluster_refresh_seconds: float | None = None,
                 log_capacity: int = DEFAULT_CAPACITY, save_dir: Path | None = None,
                 activity_log: Path | None = None, offer_first_run: bool = True) -> None:
        super().__init__()
        self.services = services
        self.refresh_seconds = refresh_seconds
        # Clusters ask every member's agent (one SSH session each): a modest rate, 15 s by default.
        self.cluster_refresh_seconds = (cluster_refresh_seconds if cluster_refresh_seconds is not None
                                        else max(15.0, 3 * refresh_seconds))
        self.log_capacity = log_capacity
        self.save_dir = save_dir
        self.activity_log = activity_log
        self.offer_first_run = offer_first_run
        self._on_done: dict[Worker, Callable[[Any], None]] = {}
        self._on_error: dict[Worker, Callable[[str, str], None]] = {}
        self._log_handler: logging.Handler | None = None
        self.errors_shown: list[tuple[str, str]] = []   # (title, fix), newest last

    def on_mount(self) -> None:
        self._open_activity_log()
        activity.info("podtui started")
        self.push_screen(MainScreen())
        if self.services.needs_runpod_key and self.offer_first_run:
            self.push_screen(FirstRunScreen(), self._first_run_done)
        self.call_after_refresh(gc.freeze)

    # Why gc.freeze: the objects that exist once the first screen is drawn (Textual, Rich, the
    # CSS, our widgets) live as long as the app. Left in the collector's oldest generation, every
    # full collection re-scans them all — measured at 90-150 ms pauses while a log pours in
    # (bench/tui_logs.py), longer than a frame. Frozen, full collections take ~10 ms.

    def on_unmount(self) -> None:
        gc.unfreeze()   # give what was frozen at start back to the collector (tests run many apps)
        # Tunnels and SSH connections close on a daemon thread: a dead network must not hold `q`.
        threading.Thread(target=self.services.close, daemon=True, name="close services").start()
        if self._log_handler:
            activity.removeHandler(self._log_handler)
            self._log_handler.close()

    def _open_activity_log(self) -> None:
        if self.activity_log is None:
            return
        try:
            self.activity_log.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.activity_log, encoding="utf-8")
        except OSError as exc:   # a read-only state dir must not stop the UI
            self.notify(f"cannot write the activity log: {exc}", severity="warning")
            return
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        activity.addHandler(handler)
        activity.setLevel(logging.INFO)
        activity.propagate = False   # the root handler (podtui.logfile) may write the same file
        self._log_handler = handler

    def _first_run_done(self, key: str | None) -> None:
        if not key:
            return
        from podtui.tui.wiring import store_runpod_key

        def stored(services: TuiServices) -> None:
            self.services = services
            self.notify("Runpod API key saved (mode 0600).", title="podtui")
            if isinstance(self.screen, MainScreen):
                self.screen.refresh_all()

        self.run_service(store_runpod_key, key, name="save the Runpod key", group="config",
                         on_done=stored)

    # ---- background calls ----------------------------------------------------------------------
    def run_service(self, call: Callable[..., Any], *args: Any, name: str, group: str,
                    on_done: Callable[[Any], None] | None = None,
                    on_error: Callable[[str, str], None] | None = None,
                    exclusive: bool = False, **kwargs: Any) -> Worker:
        """Run a blocking service call off the event loop; `on_done(result)` runs on the UI
        thread when it succeeds. A failure opens the error dialog, or, where the caller shows
        failures in place (the refresh line, the swap dialog), goes to `on_error(title, fix)`."""
        bound = partial(call, *args, **kwargs)
        worker = self.run_worker(in_daemon_thread(bound, name=name), name=name, group=group,
                                 exit_on_error=False, exclusive=exclusive)
        if on_done is not None:
            self._on_done[worker] = on_done
        if on_error is not None:
            self._on_error[worker] = on_error
        return worker

    @on(Worker.StateChanged)
    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        on_done = self._on_done.pop(worker, None)
        on_error = self._on_error.pop(worker, None)
        if not self.is_running or self._closing or not (_still_there(on_done) and _still_there(on_error)):
            # The screen that asked has gone, or the app is shutting down: Textual prunes the
            # screens' widgets before the app stops, so a late result must not reach them.
            return
        if event.state == WorkerState.SUCCESS and on_done is not None:
            on_done(worker.result)
        elif event.state == WorkerState.ERROR:
            title, fix = describe_error(worker.error)
            activity.warning("%s failed: %s (fix: %s)", worker.name, title, fix)
            if on_error is not None:
                on_error(title, fix)
            else:
                self.show_error(title, fix, context=worker.name)

    def show_error(self, title: str, fix: str, *, context: str = "") -> None:
        self.errors_shown.append((title, fix))
        self.push_screen(ErrorDialog(title, fix, context=context))

    # ---- navigation ----------------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def open_logs(self, source: LineFollower) -> None:
        self.push_screen(LogsScreen(source, capacity=self.log_capacity, save_dir=self.save_dir))


def _still_there(callback: Callable | None) -> bool:
    owner = getattr(callback, "__self__", None)
    return owner is None or getattr(owner, "is_attached", True)


def build_app(services: TuiServices | None = None, **options: Any) -> PodtuiApp:
    """The app, for the CLI (real services) and the tests (test-bed-backed services)."""
    if services is None:
        from podtui.tui.wiring import default_services

        services = default_services()
        options.setdefault("activity_log", paths.log_dir() / "podtui.log")
    return PodtuiApp(services, **options)

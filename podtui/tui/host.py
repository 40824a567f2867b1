"""What screens and flows may ask of the app, typed without importing it (the app imports the
screens, so a screen importing the app would be a cycle). PodtuiApp is the one implementation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from podtui.services.follow import LineFollower
from podtui.services.front import TuiServices


class AppHost(Protocol):
    services: TuiServices
    refresh_seconds: float
    cluster_refresh_seconds: float

    def run_service(self, call: Callable[..., Any], *args: Any, name: str, group: str,
                    on_done: Callable[[Any], None] | None = None,
                    on_error: Callable[[str, str], None] | None = None,
                    exclusive: bool = False, **kwargs: Any) -> Any: ...

    def push_screen(self, screen: Any, callback: Callable[[Any], None] | None = None) -> Any: ...

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None) -> None: ...

    def open_logs(self, source: LineFollower) -> None: ...

    def show_error(self, title: str, fix: str, *, context: str = "") -> None: ...


class Hosted:
    """Mixed into a screen: `self.app_host` is the app, typed as AppHost."""

    @property
    def app_host(self) -> AppHost:
        return cast(AppHost, self.app)  # type: ignore[attr-defined]  # Textual's Screen.app

"""Builds the real TuiServices from podtui's configured providers.

Runpod is wired when an API key is configured (RUNPOD_API_KEY, podtui's config file or
~/.runpod/config.toml). Without one, the base TuiServices opens the main screen and says in the
footer how to add a key; SSH hosts and the local pod are not providers yet (issue #6).
"""

from __future__ import annotations

from podtui.tui.services import PodListing, TuiServices


class NoProviders(TuiServices):
    needs_runpod_key = True    # the app offers the first-run screen

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def list_pods(self) -> PodListing:
        return PodListing(problems=[self.reason])


def default_services() -> TuiServices:
    from podtui.providers.runpod import NoApiKey, RunpodProvider
    from podtui.services.pods import PodService
    from podtui.tui.provider_services import ProviderServices

    try:
        provider = RunpodProvider.from_environment()
    except NoApiKey as exc:
        return NoProviders(f"{exc.title}: {exc.fix}" if exc.fix else exc.title)
    return ProviderServices([PodService(provider)])


def store_runpod_key(key: str) -> TuiServices:
    """Save the key in podtui's config file (0600, via podtui.config) and rebuild the services."""
    from podtui.config import update_config

    update_config("runpod", {"api_key": key})
    return default_services()

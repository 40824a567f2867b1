"""Builds the real TuiServices from podtui's configured providers.

Every configured provider is listed: Runpod when an API key is configured (RUNPOD_API_KEY,
podtui's config file or ~/.runpod/config.toml), the SSH hosts added with `podtui hosts add`, and
the local pod. Without a Runpod key the first-run dialog offers to store one.
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
    from podtui.services.pods import PodService
    from podtui.tui.provider_services import ProviderServices

    try:   # every configured provider: Runpod, added SSH hosts, the local pod (issue #6)
        from podtui.services.providers import open_providers
    except ImportError:
        open_providers = None
    if open_providers is None:
        return _runpod_only()
    warnings: list[str] = []   # e.g. a config file holding the key that others can read
    opened = open_providers(warnings=warnings)
    services = ProviderServices([PodService(provider) for provider in opened.providers])
    services.notes = [*warnings, *opened.notes, *(f"{exc.title} ({exc.fix})" for exc in opened.problems)]
    services.needs_runpod_key = not any(p.name == "runpod" for p in opened.providers)
    return services


def _runpod_only() -> TuiServices:
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

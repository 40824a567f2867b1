"""Builds the real TuiServices from podtui's configured providers.

Every configured provider is listed: Runpod when an API key is configured (RUNPOD_API_KEY,
podtui's config file or ~/.runpod/config.toml), the SSH hosts added with `podtui hosts add`, and
the local pod; with a Runpod key, its Serverless endpoints too. Without a Runpod key the first-run
dialog offers to store one, and the endpoints section says how to add one.
"""

from __future__ import annotations

from podtui.services.front import TuiServices

NO_KEY_NOTE = "no Runpod API key is configured (podtui asks for one at start; or export RUNPOD_API_KEY)"


def default_services() -> TuiServices:
    from podtui.services.dashboard import ProviderServices
    from podtui.services.dashboard_endpoints import endpoint_board
    from podtui.services.pods import PodService
    from podtui.services.providers import open_providers

    warnings: list[str] = []   # e.g. a config file holding the key that others can read
    opened = open_providers(warnings=warnings)
    services = ProviderServices([PodService(provider) for provider in opened.providers],
                                endpoints=endpoint_board(opened.providers))
    services.needs_runpod_key = not any(p.can_launch for p in opened.providers)
    # Without a key the first-run dialog has said how to add one; the footer keeps a short line
    # instead of the CLI's long note (opened.notes holds only that note today).
    notes = [NO_KEY_NOTE] if services.needs_runpod_key else opened.notes
    services.notes = [*warnings, *notes, *(f"{exc.title} ({exc.fix})" for exc in opened.problems)]
    return services


def store_runpod_key(key: str) -> TuiServices:
    """Save the key in podtui's config file (0600, via podtui.config) and rebuild the services."""
    from podtui.config import update_config

    update_config("runpod", {"api_key": key})
    return default_services()

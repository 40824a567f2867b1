"""Every configured provider at once: Runpod (when a key is configured), the SSH hosts the user
added, and the local pod (always: with no cloud account podtui still shows this machine).

One provider failing never hides the others' pods: its error is kept as a problem beside the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from podtui.config import Config, load_config
from podtui.errors import PodtuiError
from podtui.providers.base import Pod, Provider
from podtui.providers.local import LOCAL_ID, LocalProvider
from podtui.providers.ssh_host import find_host, load_hosts
from podtui.services.sessions import ssh_host_provider


@dataclass
class ProviderSet:
    """The providers that could be opened, with notes and the errors of those that could not."""

    providers: list[Provider]
    notes: list[str] = field(default_factory=list)       # e.g. why Runpod is not listed
    problems: list[PodtuiError] = field(default_factory=list)  # a provider that could not be opened


@dataclass
class Listing:
    """Every provider's pods as (provider, pod), and (provider, error) for each that failed to list."""

    pods: list[tuple[Provider, Pod]] = field(default_factory=list)
    problems: list[tuple[Provider, PodtuiError]] = field(default_factory=list)


def open_runpod(config: Config | None = None, on_wait: Callable[[str], None] | None = None,
                warnings: list[str] | None = None):
    """The Runpod provider from the environment and config (config warnings appended to warnings).
    Raises NoApiKey when no key is configured; ConfigError when the config file cannot be read."""
    from podtui.providers.runpod import RunpodProvider

    return RunpodProvider.from_environment(config, on_wait=on_wait, warnings=warnings)


def open_providers(config: Config | None = None, on_wait: Callable[[str], None] | None = None,
                   warnings: list[str] | None = None) -> ProviderSet:
    """Runpod (if a key is set), the added SSH hosts (if any), and always the local provider, in that
    order; a missing key becomes a note, other provider errors problems. Raises ConfigError only when
    config is None and the config file cannot be read."""
    from podtui.providers.runpod import NoApiKey

    config = config if config is not None else load_config()
    result = ProviderSet([])
    try:
        result.providers.append(open_runpod(config, on_wait, warnings))
    except NoApiKey as exc:
        result.notes.append(f"Runpod: {exc.title} ({exc.fix})")
    except PodtuiError as exc:
        result.problems.append(exc)
    try:
        hosts = load_hosts(config)
    except PodtuiError as exc:
        result.problems.append(exc)
        hosts = []
    if hosts:
        result.providers.append(ssh_host_provider(hosts))
    result.providers.append(LocalProvider())
    return result


def list_everywhere(providers: list[Provider]) -> Listing:
    """Every provider's pods; a provider's PodtuiError is kept in Listing.problems, never raised."""
    listing = Listing()
    for provider in providers:
        try:
            listing.pods.extend((provider, pod) for pod in provider.list_pods())
        except PodtuiError as exc:
            listing.problems.append((provider, exc))
    return listing


def provider_for(ref: str, on_wait: Callable[[str], None] | None = None,
                 warnings: list[str] | None = None) -> Provider:
    """The provider that owns POD `ref`: `local`, an added host's name, else Runpod. Raises
    NoApiKey (Runpod with no key), ProviderError (a malformed added host), ConfigError."""
    if ref == LOCAL_ID:
        return LocalProvider()
    config = load_config()
    if find_host(ref, config) is not None:
        return ssh_host_provider(load_hosts(config))
    return open_runpod(config, on_wait, warnings)


def find_anywhere(ref: str, on_wait: Callable[[str], None] | None = None,
                  warnings: list[str] | None = None) -> tuple[Provider, Pod]:
    """(provider, pod) for POD `ref` (an id or name). Raises what provider_for raises, PodNotFound,
    or ProviderError (e.g. a name shared by several pods, an API failure)."""
    provider = provider_for(ref, on_wait, warnings)
    return provider, provider.find_pod(ref)

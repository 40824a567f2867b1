"""Every filesystem location podtui uses, in one place (`podtui locate` prints them)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "podtui"


def config_dir() -> Path:
    override = os.environ.get("PODTUI_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP))


def state_dir() -> Path:
    override = os.environ.get("PODTUI_STATE_DIR")
    return Path(override) if override else Path(platformdirs.user_state_dir(APP))


def cache_dir() -> Path:
    """What can be made again (engine builds: `podtui local setup`)."""
    override = os.environ.get("PODTUI_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP))


def config_file() -> Path:
    return config_dir() / "config.toml"


def known_hosts_file() -> Path:
    """podtui's own OpenSSH-format known_hosts: plain `ssh -o UserKnownHostsFile=…` can use it."""
    return config_dir() / "known_hosts"


def log_dir() -> Path:
    return state_dir() / "logs"


def all_locations() -> dict[str, Path]:
    return {
        "config_dir": config_dir(),
        "config_file": config_file(),
        "known_hosts": known_hosts_file(),
        "state_dir": state_dir(),
        "log_dir": log_dir(),
        "cache_dir": cache_dir(),
    }

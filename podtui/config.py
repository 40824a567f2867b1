"""podtui's config file (TOML at podtui.paths.config_file()).

It may hold a Runpod API key, so podtui writes it mode 0600 (atomically) and warns, naming the
`chmod 600 …` fix, whenever it finds the file readable by group or others. A key is never echoed.

    [runpod]
    api_key = "…"
    api_url = "https://api.runpod.io"   # optional
    image = "ghcr.io/you/podtui-pod:0.1.0"

    [ssh_hosts]                         # podtui hosts add|remove (podtui/providers/ssh_host.py)
    gpubox = {address = "root@203.0.113.9:2222", identity = "/home/me/.ssh/id_ed25519", agent_command = "remote-agent rpc"}
"""

from __future__ import annotations

import os
import stat
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from podtui import paths
from podtui.errors import PodtuiError


class ConfigError(PodtuiError):
    pass


def permission_warning(path: Path) -> str | None:
    """A warning with the fix when `path` is readable by group or others, else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"warning: {path} is readable by other users (mode {stat.S_IMODE(mode):03o}) and may "
                f"hold an API key; fix: chmod 600 {path}")
    return None


@dataclass
class Config:
    path: Path
    data: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def get(self, section: str, key: str, default=None):
        value = self.data.get(section, {})
        return value.get(key, default) if isinstance(value, dict) else default

    def __repr__(self) -> str:  # the data may hold an API key
        return f"Config(path={str(self.path)!r}, sections={sorted(self.data)!r})"


def load_config(path: Path | None = None) -> Config:
    path = Path(path) if path is not None else paths.config_file()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Config(path)
    except OSError as exc:
        raise ConfigError(f"cannot read podtui's config file {path}: {exc.strerror or exc}",
                          f"check its permissions (chmod 600 {path})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"podtui's config file {path} is not valid TOML: {exc}",
                          "fix the line named above, or move the file away to start afresh") from None
    warning = permission_warning(path)
    return Config(path, data, [warning] if warning else [])


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                   .replace("\r", "\\r").replace("\t", "\\t"))
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot store a {type(value).__name__} in the config file", "")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def dumps(data: dict) -> str:
    """TOML for podtui's own shape: top-level sections of scalars, lists and inline tables."""
    out: list[str] = []
    for name, section in data.items():
        if not isinstance(section, dict):
            out.insert(0, f"{_toml_key(name)} = {_toml_value(section)}")
            continue
        out.append(f"\n[{_toml_key(name)}]")
        out.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in section.items())
    return "\n".join(out).lstrip("\n") + "\n"


def save_config(data: dict, path: Path | None = None) -> Path:
    """Write atomically with mode 0600 (the file is created 0600, never widened then narrowed)."""
    path = Path(path) if path is not None else paths.config_file()
    text = dumps(data)
    tomllib.loads(text)  # never write a file we could not read back
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config.", dir=path.parent)  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def update_config(section: str, values: dict, path: Path | None = None) -> Path:
    config = load_config(path)
    data = dict(config.data)
    merged = dict(data.get(section, {}))
    merged.update(values)
    data[section] = merged
    return save_config(data, config.path)


def remove_config_key(section: str, key: str, path: Path | None = None) -> bool:
    """Drop `key` from `section` (and the section once empty); False when it was not there."""
    config = load_config(path)
    data = dict(config.data)
    values = data.get(section)
    if not isinstance(values, dict) or key not in values:
        return False
    values = {k: v for k, v in values.items() if k != key}
    if values:
        data[section] = values
    else:
        data.pop(section)
    save_config(data, config.path)
    return True

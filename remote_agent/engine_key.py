"""The engine's API key: every engine the agent starts requires one, unless the user opts out.

Why: llama-server and koboldcpp answer whoever reaches their port, and their CORS allows every
origin (llama-server warns "no API key is set and CORS allows all origins"). Once a podtui tunnel
is up (local 127.0.0.1:5002 → the pod's engine), any web page open in the user's browser could
send requests there and read the answers; the local pod is the same. A key defeats that, DNS
rebinding included (an Origin check would not), and every OpenAI-compatible client takes one.

Where the key comes from, first match wins:
1. ARGS already gives the engine one (llama-server `--api-key` / `--api-key-file`, koboldcpp
   `--password`): it is respected and never doubled (the adapters read it: `args_key`).
2. API_KEY: the image's own name — plain like MODEL, CTX and PORT, and engine-neutral (koboldcpp
   reads no variable of its own).
3. LLAMA_API_KEY: llama.cpp's name, which llama-server would read from its environment by itself;
   honouring it keeps a pod configured for llama.cpp's stock image on the key it was given, so
   the agent never probes with one key while the engine checks another.
4. Generated once (secrets.token_urlsafe) into `<state dir>/engine-api-key`, mode 0600, so it
   survives agent and engine restarts and model swaps (a pod's state dir is on its volume).

`API_KEY=none` (or `LLAMA_API_KEY=none`) opts out: the engine runs without a key, and boot's log
and `status` say so. Both variables are secrets: no child process inherits them (child_env), the
engine gets the chosen key from the agent alone. Standard library only.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ENV_NAMES = ("API_KEY", "LLAMA_API_KEY")  # in order of precedence; see the module docstring
OPT_OUT = "none"
KEY_FILE = "engine-api-key"
GENERATED = "generated"
FROM_ARGS = "ARGS"
# Visible ASCII without quotes, commas or backslashes: llama-server splits --api-key /
# LLAMA_API_KEY on commas (a list of keys) with CSV quoting, koboldcpp strips the password, and
# the key travels in an HTTP header.
_KEY_SHAPE = re.compile(r"[!#-&(-+\--\[\]-~]+")  # 0x21-0x7E but for " ' , and backslash
OPT_OUT_WARNING = ("the engine runs WITHOUT an API key ({how}): while a tunnel or the local pod is up, "
                   "any web page open in your browser can use the model and read its answers; unset it "
                   "to have the agent set a key")
log = logging.getLogger("remote_agent.engine_key")


class EngineKeyError(ValueError):
    """A user-given key that the engines cannot take; the message names the variable and the fix."""


@dataclass(frozen=True)
class EngineKey:
    """The key an engine runs with (value None: keyless, on the user's explicit opt-out) and where
    it came from: "API_KEY", "LLAMA_API_KEY", "ARGS", "generated", or "API_KEY=none" (opted out).
    The value never shows in a repr."""

    value: str | None = field(repr=False)
    source: str

    @property
    def opted_out(self) -> bool:
        """Whether the user asked for no key (API_KEY=none)."""
        return self.source.endswith(f"={OPT_OUT}")

    @property
    def required(self) -> bool:
        """Whether the engine refuses requests without a key (also when ARGS set one through a file
        the agent cannot read: value None)."""
        return not self.opted_out

    @property
    def warning(self) -> str | None:
        """What boot and `status` say when the user opted out; None when a key is set."""
        return OPT_OUT_WARNING.format(how=self.source) if self.opted_out else None


KEYLESS = EngineKey(None, f"API_KEY={OPT_OUT}")  # what an engine started without any key runs with


def is_opt_out(value: str | None) -> bool:
    """Whether value is the explicit opt-out word ("none", any case)."""
    return value is not None and value.strip().lower() == OPT_OUT


def check_key(value: str, name: str) -> str:
    """value when the engines can take it as a key; EngineKeyError naming `name` otherwise."""
    if not _KEY_SHAPE.fullmatch(value):
        raise EngineKeyError(f"{name} holds characters an engine key cannot have (spaces, commas, quotes, "
                             "backslashes or non-ASCII); use letters, digits and -._~+/=, or "
                             f"{name}={OPT_OUT} to run without a key")
    return value


def key_from_env(env: dict[str, str]) -> EngineKey | None:
    """The user's key (or opt-out) from API_KEY, else LLAMA_API_KEY; None when neither is set.
    Raises EngineKeyError for a key the engines cannot take."""
    for name in ENV_NAMES:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        if is_opt_out(raw):
            return EngineKey(None, f"{name}={OPT_OUT}")
        return EngineKey(check_key(raw, name), name)
    return None


def key_file(state_dir: Path) -> Path:
    return Path(state_dir) / KEY_FILE


def read_stored(state_dir: Path) -> str | None:
    """The generated key kept in state_dir, or None when there is none (or it is unusable)."""
    try:
        text = key_file(state_dir).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text and _KEY_SHAPE.fullmatch(text) else None


def stored_key(state_dir: Path) -> str:
    """The key kept in state_dir, generated on first use. The file is written whole under a
    temporary name and linked into place, so boot and the daemon (or two daemons) racing to create
    it agree on one key and nobody ever reads half of one. Raises OSError when state_dir is not
    writable."""
    existing = read_stored(state_dir)
    path = key_file(state_dir)
    if existing is not None:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return existing
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".engine-api-key-", dir=state_dir)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # fails when another process got there first: theirs wins
        except FileExistsError:
            if read_stored(state_dir) is None:  # an empty or mangled file: replace it
                os.replace(tmp, path)
                tmp = None
    finally:
        if tmp is not None:
            os.unlink(tmp)
    key = read_stored(state_dir)
    if key is None:
        raise OSError(f"{path} could not be read back")
    return key


def resolve(user: EngineKey | None, state_dir: Path) -> EngineKey:
    """The agent's key: the user's (or their opt-out), else the one kept in state_dir. Where
    state_dir cannot be written, a key for this run only (logged): never fall back to no key."""
    if user is not None:
        return user
    try:
        return EngineKey(stored_key(state_dir), GENERATED)
    except OSError as exc:
        log.warning("cannot keep the engine's API key in %s (%s); using a key for this run only, which "
                    "changes when the agent restarts", key_file(state_dir), exc)
        return EngineKey(secrets.token_urlsafe(32), GENERATED)


def auth_headers(key: str | None) -> dict[str, str]:
    """The request header both engines check (llama-server also takes X-Api-Key; koboldcpp only
    this); empty without a key."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def masked(text: str, keys: list[str | None]) -> str:
    """text with every key in keys replaced by ***."""
    for key in keys:
        if key:
            text = text.replace(key, "***")
    return text

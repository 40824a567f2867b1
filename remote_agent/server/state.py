"""The last good engine configuration, persisted atomically so a restarted daemon restores it."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

STATE_FILE = "agent-state.json"
STATE_VERSION = 1
log = logging.getLogger("remote_agent.state")


class StateStore:
    """The daemon's persisted state (the last good config, whether it was running, the boot MODEL):
    one JSON file in state_dir."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / STATE_FILE

    def load(self) -> dict | None:
        """The saved state, or None when there is none; a corrupt file is set aside, not fatal."""
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise ValueError(f"unexpected content (version {data.get('version') if isinstance(data, dict) else '?'})")
            return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            aside = self.path.with_suffix(".corrupt")
            log.warning("state file %s is unreadable (%s); moved to %s and starting fresh", self.path, exc, aside)
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            return None

    def save(self, data: dict) -> None:
        """Write to a temporary file in the same directory, fsync, then rename over the old one, so
        a crash leaves either the old or the new state, never half of one."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = json.dumps({**data, "version": STATE_VERSION}, indent=2, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=".agent-state-", dir=self.state_dir)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        try:
            dir_fd = os.open(self.state_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass

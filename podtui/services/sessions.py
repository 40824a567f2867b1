"""TARGET on the command line → what a session (tunnel, agent, hostkey) talks to.

In order: a name from `podtui hosts` (its address, identity and agent command), `local` (the local
pod, reached through a local bridge, no SSH), an explicit `ssh://` / `user@` address, a Runpod pod
id or name (its printed host keys fetched from the log and pinned first), and finally any
`[user@]host[:port]`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from podtui.providers.local import LOCAL_ID
from podtui.providers.ssh_host import SshHost, find_host
from podtui.services.pods import Progress, _quiet, resolve_pod_target
from podtui.ssh.target import SshTarget, resolve_target

POD_LOG_TIMEOUT_ENV = "PODTUI_POD_LOG_TIMEOUT_S"


@dataclass(frozen=True)
class SessionTarget:
    ssh: SshTarget | None            # None: the local pod
    host: SshHost | None = None      # set when TARGET named an added SSH host

    @property
    def local(self) -> bool:
        return self.ssh is None

    @property
    def identity(self) -> Path | None:
        return self.host.identity if self.host is not None else None

    @property
    def agent_command(self) -> str | None:
        return self.host.agent_command if self.host is not None else None


def resolve_session_target(text: str, user: str | None = None, progress: Progress = _quiet, *,
                           pin_from_log: bool = True) -> SessionTarget:
    host = find_host(text)
    if host is not None:
        return SessionTarget(host.target(user), host)
    if text == LOCAL_ID:
        return SessionTarget(None)

    def pods(ref: str, login: str | None) -> SshTarget | None:
        timeout = float(os.environ.get(POD_LOG_TIMEOUT_ENV) or 60.0)
        return resolve_pod_target(ref, login, progress, block_timeout_s=timeout, pin_from_log=pin_from_log)

    return SessionTarget(resolve_target(text, user, pod_resolver=pods))

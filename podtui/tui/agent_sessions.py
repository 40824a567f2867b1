"""SSH connections to pods' agents for the TUI: one verified connection per pod, opened lazily,
each agent conversation on its own exec channel (`remote-agent rpc`).

Every connect runs the pinned host-key policy (podtui.ssh.trust): an unpinned or changed key
raises HostKeyNotVerified before a byte is sent, and the app shows it with its fix. A log follower
gets a channel of its own, so stopping it (closing that channel) ends exactly that stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from podtui.ssh.agent_client import DEFAULT_AGENT_COMMAND, AgentClient
from podtui.ssh.connection import ConnectOptions, SshConnection
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import SshTarget
from podtui.ssh.trust import HostKeyPolicy
from podtui.tui.line_source import Emit, IterableFollower, LineFollower

activity = logging.getLogger("podtui.tui")  # the TUI's activity log (L)

ProgressCallback = Callable[[str, float | None, str], None]


class AgentSessions:
    def __init__(self, options: ConnectOptions | None = None,
                 agent_command: str = DEFAULT_AGENT_COMMAND) -> None:
        self.options = options or ConnectOptions()
        self.agent_command = agent_command
        self._connections: dict[str, SshConnection] = {}
        self._lock = threading.Lock()

    def connection(self, known_hosts: KnownHosts, target: SshTarget) -> SshConnection:
        with self._lock:
            connection = self._connections.get(target.alias)
            if connection is not None and connection.is_active():
                return connection
            connection = SshConnection(
                target, HostKeyPolicy(known_hosts, target.alias, target.label), self.options)
            outcome = connection.connect()
            if outcome.warning:   # a pin the user trusted without verification: say so every time
                activity.warning(outcome.warning)
            self._connections[target.alias] = connection
            return connection

    def client(self, known_hosts: KnownHosts, target: SshTarget) -> AgentClient:
        client = AgentClient(self.connection(known_hosts, target), self.agent_command)
        client.open()
        return client

    def close_all(self) -> None:
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()


def swap_progress(progress: ProgressCallback) -> Callable[[str, dict], None]:
    """The agent's swap events mapped onto the dialog's three bars: download, fit, load."""

    def on_event(kind: str, data: dict) -> None:
        if kind == "progress":
            phase = str(data.get("phase", ""))
            if phase in ("download", "verify"):
                total, done = data.get("total"), data.get("bytes")
                fraction = done / total if isinstance(total, int) and total and \
                    isinstance(done, int) else None
                progress("download", fraction, f"{data.get('file', '')}")
            elif phase == "resolve":
                progress("download", None, f"resolving {data.get('model', '')}")
            elif "fit" in phase or "estimate" in phase:
                progress("download", 1.0, "")
                progress("fit", data.get("fraction"), str(data.get("message", "")))
            else:
                progress("load", None, str(data.get("message", phase)))
        elif kind == "state":
            state = str(data.get("state", ""))
            progress("download", 1.0, "")
            progress("fit", 1.0, "")
            progress("load", 1.0 if state == "ready" else None, state)

    return on_event


class AgentLogFollower(LineFollower):
    """`logs.tail` with follow, on a channel of its own; the stop Event closes that channel."""

    def __init__(self, open_client: Callable[[], AgentClient], title: str, last: int = 1000) -> None:
        self._open_client = open_client
        self.title = title
        self._last = last

    def follow(self, emit: Emit, stop: threading.Event) -> None:
        client = self._open_client()
        threading.Thread(target=lambda: (stop.wait(), client.close()), daemon=True,
                         name=f"close {self.title}").start()
        try:
            IterableFollower(lambda: self._lines(client), self.title).follow(emit, stop)
        except Exception:
            if not stop.is_set():      # not the channel we closed on purpose
                raise
        finally:
            stop.set()                 # closes the channel if the stream ended by itself

    def _lines(self, client: AgentClient) -> Iterator[str]:
        events = client.stream("logs.tail", {"n": self._last, "follow": True, "source": "all"})
        for kind, data in events:
            if kind == "log":
                source = data.get("source", "")
                yield f"[{source}] {data.get('line', '')}" if source else str(data.get("line", ""))

"""podtui.services.engine_access.engine_api_key: the key a pod's engine requires, asked of the real
`remote-agent daemon` (through the local bridge, as for the local pod), and None from a keyless
agent or one older than engine keys (the protocol double, which knows no `engine.api_key`)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from podtui.agent.client import AgentClient
from podtui.agent.local_bridge import LocalBridge, LocalChannel
from podtui.services.engine_access import engine_api_key, key_text
from tests.testbed.agent_daemon import DaemonProcess

pytestmark = pytest.mark.timeout(60)
DOUBLE = Path(__file__).parents[1] / "commands" / "agent_double.py"


@pytest.fixture
def start_daemon(tmp_path, llama_bin):
    started: list[DaemonProcess] = []

    def start(env: dict[str, str]) -> DaemonProcess:
        root = tmp_path / f"d{len(started)}"
        root.mkdir()
        daemon = DaemonProcess(root, llama_bin, env=env, args=["--no-autostart"]).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def ask(opener) -> str | None:
    client = AgentClient(opener)
    client.open()
    try:
        return engine_api_key(client)
    finally:
        client.close()


def test_the_agents_key_before_any_engine_runs_is_the_one_kept_in_its_state_dir(start_daemon):
    daemon = start_daemon({})
    key = ask(LocalBridge(daemon.socket))
    assert key and key == (daemon.root / "state" / "engine-api-key").read_text().strip()
    assert key_text(key) == key


def test_a_keyless_agent_gives_none(start_daemon):
    daemon = start_daemon({"API_KEY": "none"})
    assert ask(LocalBridge(daemon.socket)) is None
    assert key_text(None).startswith("none")


@dataclass(frozen=True)
class _Label:
    label: str = "the agent double"


class OldAgent:
    """A channel opener that runs the protocol double, which answers engine.api_key with unknown_method."""

    target = _Label()

    def open_exec(self, command: str = "", timeout: float = 10.0) -> LocalChannel:
        return LocalChannel(subprocess.Popen([sys.executable, str(DOUBLE)], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE))


def test_an_agent_older_than_engine_keys_gives_none():
    assert ask(OldAgent()) is None

"""The TUI's tunnel action (`t`) on a pod that runs Jupyter (issue 20): the same verified tunnel
also forwards Jupyter, and the message gives its URL with the token. A Runpod double's pod whose
SSH port is a real `remote-agent boot` with JUPYTER=1 (test-bed sshd, real daemon, real Jupyter)."""

from __future__ import annotations

import sys
import urllib.parse

import httpx
import pytest

from podtui.services.dashboard import ProviderServices
from podtui.services.pods import PodService
from podtui.services.sessions import AgentSessions
from podtui.ssh.connection import ConnectOptions
from podtui.ssh.hostkeys import parse_printed_blocks
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.target import pod_alias
from tests.remote_agent.boot.jupyter_boot import start_jupyter_boot
from tests.testbed.procs import free_port
from tests.testbed.runpod_double import SPEC_PATH, RunpodDouble
from tests.testbed.runpod_provider import API_KEY, make_provider
from tests.testbed.sshd import have_sshd

pytestmark = [pytest.mark.skipif(not have_sshd(), reason="needs openssh-server"), pytest.mark.timeout(120)]


def test_the_tui_tunnel_carries_jupyter_when_the_pod_runs_it(tmp_path, client_key):
    if not SPEC_PATH.exists():
        pytest.skip(f"the Runpod REST v2 spec is not at {SPEC_PATH}")
    boot = start_jupyter_boot(tmp_path / "pod", client_key)
    double = RunpodDouble(API_KEY, ssh_host="127.0.0.1", ssh_port=boot.sshd_port).start()
    sessions = AgentSessions(ConnectOptions(identity=client_key, use_agent=False),
                             agent_command=f"{sys.executable} -m remote_agent rpc --socket "
                                           f"{boot.root / 'run' / 'remote-agent' / 'agent.sock'}")
    provider = make_provider(double)
    try:
        pod = double.add_pod("notebook", env={"PORT": boot.env["PORT"], "JUPYTER": "1"})
        known_hosts = KnownHosts(tmp_path / "known_hosts")
        known_hosts.replace(pod_alias(pod["id"]), list(parse_printed_blocks(boot.output()).keys), verified=True)
        port = free_port()
        services = ProviderServices([PodService(provider, known_hosts)], sessions=sessions,
                                    tunnel_ports=range(port, port + 1))
        said = services.toggle_tunnel(f"runpod:{pod['id']}")
        assert "tunnel up" in said and "(host key verified)" in said and "; Jupyter http://127.0.0.1:" in said
        url = urllib.parse.urlsplit(said.split("; Jupyter ", 1)[1].strip())
        token = (boot.root / "workspace" / ".podtui" / "agent" / "jupyter-token").read_text().strip()
        assert url.path == "/lab" and urllib.parse.parse_qs(url.query) == {"token": [token]}
        local = f"http://{url.netloc}"
        assert httpx.get(f"{local}/api/status", params={"token": token}, timeout=10).status_code == 200
        assert httpx.get(f"{local}/api/status", timeout=10).status_code == 403
        assert "closed" in services.toggle_tunnel(f"runpod:{pod['id']}")
    finally:
        sessions.close_all()
        provider.api.close()
        double.stop()
        boot.stop()

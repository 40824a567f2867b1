"""podtui.ssh and the SSH verbs never load textual (so `podtui tunnel` starts fast)."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = ["podtui.ssh.hostkeys", "podtui.ssh.known_hosts", "podtui.ssh.target", "podtui.ssh.trust",
           "podtui.ssh.connection", "podtui.ssh.tunnel", "podtui.ssh.agent_client",
           "podtui.commands.tunnel", "podtui.commands.hostkey", "podtui.commands.agent"]


def test_ssh_modules_do_not_load_textual():
    code = "import json, sys\n" + "".join(f"import {m}\n" for m in MODULES) + "print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE, text=True)
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert "textual" not in loaded

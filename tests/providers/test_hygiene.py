"""The provider, service and pod-verb modules never load textual (the CLI path stays fast)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["podtui.providers.runpod", "podtui.services.pods", "podtui.commands.pods",
                                    "podtui.config"])
def test_no_textual(module):
    code = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE, text=True)
    assert not any(name.split(".")[0] == "textual" for name in json.loads(out.stdout))

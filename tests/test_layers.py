"""The layering holds: the import-linter contracts in pyproject.toml (checked statically), and
at run time the CLI path never loads textual, the agent never loads paramiko or podtui (fast
start, lean pod), and heavy imports stay lazy."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_import_contracts_in_pyproject_hold():
    """tui → services → providers → agent → ssh, and the forbidden edges (see pyproject.toml)."""
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint), "--no-cache"], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:]
    assert "0 broken" in out.stdout


def loaded_modules(*imports: str) -> set[str]:
    code = "import json, sys\n" + "".join(f"import {m}\n" for m in imports) + \
        "print(json.dumps(sorted(k for k, v in sys.modules.items() if v is not None)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE, text=True)
    return {name.split(".")[0] for name in json.loads(out.stdout)}


def podtui_modules_below_the_tui() -> list[str]:
    import podtui

    return [m.name for m in pkgutil.walk_packages(podtui.__path__, prefix="podtui.")
            if not m.name.startswith("podtui.tui") and not m.name.endswith("__main__")]


@pytest.mark.parametrize("module", ["podtui.cli", "podtui.ssh", "podtui.errors", "podtui.paths"])
def test_cli_path_does_not_load_textual(module):
    assert "textual" not in loaded_modules(module)


def test_nothing_below_the_tui_loads_textual_at_import():
    """Every module of commands/, services/, providers/, agent/, ssh/ imported at once."""
    assert "textual" not in loaded_modules(*podtui_modules_below_the_tui())


def test_remote_agent_loads_neither_textual_paramiko_nor_podtui():
    import remote_agent

    names = ["remote_agent"] + [m.name for m in
                                pkgutil.walk_packages(remote_agent.__path__, prefix="remote_agent.")
                                if not m.name.endswith("__main__")]
    loaded = loaded_modules(*names)
    assert not loaded & {"textual", "paramiko", "podtui"}


def test_agent_modules_the_client_imports_stay_standard_library_only():
    """podtui imports remote_agent.fit (pre-flight) and models.refs (MODEL check): they must stay light."""
    loaded = loaded_modules("podtui.services.preflight", "remote_agent.models.refs")
    assert not loaded & {"numpy", "gguf", "huggingface_hub", "textual", "httpx"}


def test_the_cli_loads_a_verbs_heavy_imports_only_when_that_verb_runs():
    """`podtui tunnel` must not pay for httpx, nor `podtui --version` for paramiko (start time)."""
    assert not loaded_modules("podtui.cli") & {"paramiko", "httpx", "invoke"}
    assert not loaded_modules("podtui.commands.tunnel", "podtui.commands.agent") & {"httpx", "invoke"}


def test_every_verb_resolves_to_its_module_and_every_command_has_a_verb():
    import importlib

    from podtui.cli import VERBS, cli

    modules = {importlib.import_module(f"podtui.commands.{name}") for name in set(VERBS.values())}
    defined = {command.name for module in modules for command in module.COMMANDS}
    assert defined == set(VERBS)
    for verb in VERBS:
        assert cli.get_command(None, verb).name == verb
    assert cli.get_command(None, "no-such-verb") is None

#!/usr/bin/env bash
# Install a podtui wheel into a fresh venv (its dependencies through pip, as configured on this
# machine) and run both entry points: what a user's first install does. With no argument it
# builds the wheel from this checkout first. Used by scripts/test.sh (so CI runs it) and by
# .github/workflows/release.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# pip's output goes to a log, shown only when a step fails.
quietly() { "$@" >"$work/pip.log" 2>&1 || { cat "$work/pip.log" >&2; echo "failed: $*" >&2; exit 1; }; }
wheel="${1:-}"
if [ -z "$wheel" ]; then
  quietly "$PY" -m pip wheel --no-deps -w "$work/dist" .
  wheel="$(ls "$work"/dist/podtui-*.whl)"
fi
"$PY" -m venv "$work/venv"
quietly "$work/venv/bin/python" -m pip install "$wheel"
"$work/venv/bin/podtui" --help | grep -q "Usage: podtui" || { echo "podtui --help failed from $wheel" >&2; exit 1; }
"$work/venv/bin/remote-agent" --help | grep -q "usage: remote-agent" || { echo "remote-agent --help failed from $wheel" >&2; exit 1; }
# The wheel must carry what the image and the TUI need at run time.
"$work/venv/bin/python" - <<'PY'
import importlib.resources as r
assert any(p.name.endswith(".tcss") for p in r.files("podtui.tui").iterdir()), "the wheel lacks the TUI's styles"
import remote_agent.cli  # noqa: F401  (the agent's entry point imports without extras)
PY
echo "package check passed: $(basename "$wheel") installs in a fresh venv; podtui and remote-agent run" >&2

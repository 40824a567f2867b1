#!/usr/bin/env bash
# The README's test command: from a fresh clone to a green suite. Installs the system packages,
# builds (or reuses) the CPU llama-server and koboldcpp, makes the tiny models, installs podtui with its test
# dependencies into .venv, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-system-deps.sh
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install --quiet --upgrade pip 2>/dev/null || true
.venv/bin/python -m pip install --quiet -e '.[test]'
# What a user's first install does: the wheel, alone in a fresh venv, runs both entry points.
PYTHON=.venv/bin/python scripts/check-package.sh
PYTHON=.venv/bin/python scripts/build-llama-server.sh >/dev/null
PYTHON=.venv/bin/python scripts/build-koboldcpp.sh >/dev/null   # after it: one build at a time
.venv/bin/python -m tests.testbed.models >/dev/null
# Where PYTHONDONTWRITEBYTECODE is set (it is on the CI machines), every podtui and remote-agent
# the suite starts would recompile the repo's modules (~0.1 s each, hundreds of starts): compile
# them once here instead. Python still checks each .pyc against its source.
.venv/bin/python -m compileall -q podtui remote_agent tests bench >/dev/null

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi
exit "$rc"

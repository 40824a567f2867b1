#!/usr/bin/env bash
# The test bed's CPU llama-server, ggml-rpc-server and llama-fit-params: built by podtui's own
# `podtui local setup` (podtui/services/local_setup.py: the pinned llama-cpp-python sdist fetched
# with pip and checked against its sha256, then CMake), into the test bed's cache instead of
# podtui's. So every cold CI run goes through the same setup path users run. Cached, keyed by
# version; rebuilt only when a binary is missing. Prints the bin directory on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${PODTUI_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podtui-testbed}"
ROOT="$CACHE/llama-cpp-python-$VERSION"
BIN="$ROOT/build/bin"
PY="${PYTHON:-.venv/bin/python}"   # the venv podtui is installed in (scripts/test.sh installs it first)

have_all() { for t in llama-server ggml-rpc-server llama-fit-params; do [ -x "$BIN/$t" ] || return 1; done; }
if have_all; then echo "$BIN"; exit 0; fi

pinned="$("$PY" -c 'from podtui.services.local_setup import SDIST_VERSION; print(SDIST_VERSION)')"
if [ "$VERSION" != "$pinned" ]; then
  echo "the test bed builds llama-cpp-python $pinned (podtui's pin), not $VERSION" >&2; exit 1
fi
mkdir -p "$ROOT"
"$PY" -m podtui local setup --cpu --dir "$ROOT" >&2
have_all || { echo "build finished but a binary is missing in $BIN" >&2; exit 1; }
echo "$BIN"

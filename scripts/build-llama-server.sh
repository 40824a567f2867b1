#!/usr/bin/env bash
# Build llama-server, ggml-rpc-server and llama-fit-params for the CPU from the llama.cpp tree
# vendored in the llama-cpp-python sdist. The build is cached outside the repo, keyed by version,
# and rebuilt only when a binary is missing. Prints the bin directory on stdout.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${PODTUI_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podtui-testbed}"
ROOT="$CACHE/llama-cpp-python-$VERSION"
BIN="$ROOT/build/bin"
TARGETS=(llama-server ggml-rpc-server llama-fit-params)

have_all() { for t in "${TARGETS[@]}"; do [ -x "$BIN/$t" ] || return 1; done; }

if have_all; then echo "$BIN"; exit 0; fi

mkdir -p "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -d "$ROOT/src/vendor/llama.cpp" ]; then
  echo "fetching llama-cpp-python==$VERSION sdist…" >&2
  rm -rf "$ROOT/dl" "$ROOT/src"
  # Fetch the sdist by URL from PyPI's simple index (PEP 503 links carry the sha256):
  # `pip download --no-binary` would build every build dependency from source to read metadata.
  mkdir -p "$ROOT/dl" "$ROOT/src"
  "$PY" - "$VERSION" "$ROOT/dl/sdist.tar.gz" <<'PYEOF'
import hashlib, re, sys, urllib.request
version, dest = sys.argv[1], sys.argv[2]
index = urllib.request.urlopen("https://pypi.org/simple/llama-cpp-python/", timeout=60).read().decode()
match = re.search(r'href="([^"#]*llama_cpp_python-%s\.tar\.gz)#sha256=([0-9a-f]{64})"' % re.escape(version), index)
if not match:
    sys.exit(f"llama-cpp-python {version} sdist not found on PyPI's simple index")
url, expected = match.groups()
urllib.request.urlretrieve(url, dest)
digest = hashlib.sha256(open(dest, "rb").read()).hexdigest()
if digest != expected:
    sys.exit(f"sha256 mismatch for {url}: got {digest}, expected {expected}")
PYEOF
  tar -xzf "$ROOT/dl/sdist.tar.gz" -C "$ROOT/src" --strip-components=1
fi

echo "building ${TARGETS[*]} (about 7 minutes on 2 cores)…" >&2
cmake -S "$ROOT/src/vendor/llama.cpp" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DGGML_RPC=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DGGML_NATIVE=ON >&2
cmake --build "$ROOT/build" --target "${TARGETS[@]}" -j"$(nproc)" >&2
have_all || { echo "build finished but a binary is missing in $BIN" >&2; exit 1; }
echo "$BIN"

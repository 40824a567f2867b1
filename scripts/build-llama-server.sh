#!/usr/bin/env bash
# Build llama-server, ggml-rpc-server and llama-fit-params for the CPU from the llama.cpp tree
# vendored in the llama-cpp-python sdist. The build is cached outside the repo, keyed by version,
# and rebuilt only when a binary is missing. Prints the bin directory on stdout.
set -euo pipefail

PINNED_VERSION=0.3.36
PINNED_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
VERSION="${LLAMA_CPP_PYTHON_VERSION:-$PINNED_VERSION}"
CACHE="${PODTUI_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podtui-testbed}"
ROOT="$CACHE/llama-cpp-python-$VERSION"
BIN="$ROOT/build/bin"
TARGETS=(llama-server ggml-rpc-server llama-fit-params)

have_all() { for t in "${TARGETS[@]}"; do [ -x "$BIN/$t" ] || return 1; done; }

if have_all; then echo "$BIN"; exit 0; fi

mkdir -p "$ROOT"
PY="${PYTHON:-python3}"   # scripts/test.sh passes the venv's python (it has pip)
if [ ! -d "$ROOT/src/vendor/llama.cpp" ]; then
  echo "fetching llama-cpp-python==$VERSION sdist through pip…" >&2
  rm -rf "$ROOT/dl" "$ROOT/src"
  mkdir -p "$ROOT/dl" "$ROOT/src"
  # pip, as configured on this machine, is the only way to the registry (no URL in this repo).
  # The pinned version's sha256 is checked (--require-hashes); another version is taken as pip
  # finds it. pip prepares the sdist's metadata, which installs scikit-build-core (a wheel) into
  # a throwaway build environment: about 20 s, no compiling.
  req="llama-cpp-python==$VERSION"
  if [ "$VERSION" = "$PINNED_VERSION" ]; then req="$req --hash=sha256:$PINNED_SHA256"; fi
  echo "$req" > "$ROOT/dl/requirements.txt"
  hash_flag=(); [ "$VERSION" = "$PINNED_VERSION" ] && hash_flag=(--require-hashes)
  "$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-python "${hash_flag[@]}" \
    -r "$ROOT/dl/requirements.txt" -d "$ROOT/dl" >&2
  sdist=("$ROOT/dl"/llama_cpp_python-"$VERSION".tar.gz)
  [ -f "${sdist[0]}" ] || { echo "pip did not leave llama_cpp_python-$VERSION.tar.gz in $ROOT/dl" >&2; exit 1; }
  tar -xzf "${sdist[0]}" -C "$ROOT/src" --strip-components=1
fi

echo "building ${TARGETS[*]} (about 7 minutes on 2 cores)…" >&2
cmake -S "$ROOT/src/vendor/llama.cpp" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DGGML_RPC=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DGGML_NATIVE=ON >&2
cmake --build "$ROOT/build" --target "${TARGETS[@]}" -j"$(nproc)" >&2
have_all || { echo "build finished but a binary is missing in $BIN" >&2; exit 1; }
echo "$BIN"

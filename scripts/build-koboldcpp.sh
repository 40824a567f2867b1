#!/usr/bin/env bash
# Build koboldcpp's CPU library (`make koboldcpp_default`) from a pinned source tarball and install
# a `koboldcpp` wrapper (the release binary's name) that runs koboldcpp.py with Python. The build
# is cached outside the repo, keyed by version, and redone only when a part is missing; a lock
# keeps two builds from running at once. Quiet unless it fails. Prints the wrapper's path on stdout.
#
# Source: the vendored tarball (../shared/vendor/koboldcpp-<v>-src.tar.gz, or
# KOBOLDCPP_SRC_TARBALL), checked against its pinned sha256; else GitHub's tag archive, which is
# downloaded only with a sha256 to check it against (KOBOLDCPP_SRC_SHA256): none is pinned here
# because nobody has measured it yet, and an unchecked download is never built.
# koboldcpp.py imports only the standard library when it runs a model from the command line
# (tkinter/customtkinter only for its GUI launcher, psutil only for --highpriority), so any
# Python >= 3.8 with ctypes serves; PYTHON (scripts/test.sh passes the venv's) is baked into the
# wrapper, with python3 as the fallback when that interpreter is gone.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PINNED_VERSION=1.76
# sha256 of ../shared/vendor/koboldcpp-1.76-src.tar.gz: LostRuins/koboldcpp at 2da346a5 without
# the Windows binaries and the image models' .embd files (see ../shared/design/TESTBED.md).
PINNED_VENDOR_SHA256=9c2d40b67505813fbe3a645bccd6c4af56f76dc06347377cbd245f00a6b45ac3
VERSION="${KOBOLDCPP_VERSION:-$PINNED_VERSION}"
CACHE="${PODTUI_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podtui-testbed}"
ROOT="$CACHE/koboldcpp-$VERSION"
SRC="$ROOT/src"
WRAPPER="$ROOT/bin/koboldcpp"
LIB="$SRC/koboldcpp_default.so"
VENDORED="${KOBOLDCPP_SRC_TARBALL:-$REPO/../shared/vendor/koboldcpp-$VERSION-src.tar.gz}"
URL="${KOBOLDCPP_SRC_URL:-https://github.com/LostRuins/koboldcpp/archive/refs/tags/v$VERSION.tar.gz}"
PY="${PYTHON:-python3}"

built() { [ -x "$WRAPPER" ] && [ -f "$LIB" ] && [ -f "$SRC/koboldcpp.py" ]; }

if built; then echo "$WRAPPER"; exit 0; fi

mkdir -p "$CACHE"
exec 9>"$CACHE/koboldcpp-$VERSION.lock"
if ! flock -n 9; then
  echo "another koboldcpp $VERSION build holds $CACHE/koboldcpp-$VERSION.lock: waiting for it…" >&2
  flock 9
fi
if built; then echo "$WRAPPER"; exit 0; fi   # the build we waited for made it

mkdir -p "$ROOT"
LOG="$ROOT/build.log"
: > "$LOG"
fail() { echo "build-koboldcpp: $*" >&2; [ -s "$LOG" ] && { echo "--- last lines of $LOG ---" >&2; tail -n 40 "$LOG" >&2; }; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ ! -f "$SRC/koboldcpp.py" ]; then
  rm -rf "$ROOT/dl" "$SRC"
  mkdir -p "$ROOT/dl" "$SRC"
  if [ -f "$VENDORED" ]; then
    tarball="$VENDORED"
    want="${KOBOLDCPP_SRC_SHA256:-}"
    if [ -z "$want" ] && [ "$VERSION" = "$PINNED_VERSION" ]; then want="$PINNED_VENDOR_SHA256"; fi
    [ -n "$want" ] || fail "no sha256 to check $tarball against: set KOBOLDCPP_SRC_SHA256"
  else
    want="${KOBOLDCPP_SRC_SHA256:-}"
    [ -n "$want" ] || fail "no vendored source at $VENDORED, and no sha256 for $URL: set KOBOLDCPP_SRC_SHA256 (or KOBOLDCPP_SRC_TARBALL)"
    tarball="$ROOT/dl/koboldcpp-$VERSION.tar.gz"
    echo "downloading koboldcpp $VERSION source from $URL…" >&2
    curl -fsSL --retry 3 -o "$tarball" "$URL" || fail "could not download $URL"
  fi
  got="$(sha256_of "$tarball")"
  [ "$got" = "$want" ] || fail "$tarball has sha256 $got, expected $want"
  tar -xzf "$tarball" -C "$SRC" --strip-components=1 || fail "could not unpack $tarball"
  rm -rf "$ROOT/dl"
fi

# The vendored snapshot lacks stable diffusion's CLIP merges table (never used for text); an empty
# one lets model.cpp compile. A full upstream tree has the real file and keeps it.
if [ ! -f "$SRC/otherarch/sdcpp/vocab.hpp" ]; then
  echo 'static const unsigned char merges_utf8_c_str[] = {0};' > "$SRC/otherarch/sdcpp/vocab.hpp"
fi

if [ ! -f "$LIB" ]; then
  echo "building koboldcpp $VERSION's CPU library (about 4 minutes on 2 cores; log: $LOG)…" >&2
  make -C "$SRC" koboldcpp_default -j"${KOBOLDCPP_JOBS:-2}" >>"$LOG" 2>&1 || fail "make koboldcpp_default failed"
  [ -f "$LIB" ] || fail "make finished but $LIB is missing"
fi

"$PY" -c 'import ctypes, sys; assert sys.version_info >= (3, 8)' 2>>"$LOG" \
  || fail "$PY cannot run koboldcpp.py (needs Python >= 3.8 with ctypes)"
py_abs="$(command -v "$PY")"; py_abs="$(cd "$(dirname "$py_abs")" && pwd)/$(basename "$py_abs")"

mkdir -p "$ROOT/bin"
cat > "$WRAPPER.tmp" <<EOF
#!/bin/sh
# koboldcpp $VERSION from $SRC (CPU library only), written by podtui's scripts/build-koboldcpp.sh.
py="\${KOBOLDCPP_PYTHON:-$py_abs}"
[ -x "\$py" ] || py=python3
exec "\$py" "$SRC/koboldcpp.py" "\$@"
EOF
chmod +x "$WRAPPER.tmp"
mv "$WRAPPER.tmp" "$WRAPPER"
"$WRAPPER" --help >>"$LOG" 2>&1 || fail "$WRAPPER --help failed"
built || fail "build finished but a part is missing under $ROOT"
echo "$WRAPPER"

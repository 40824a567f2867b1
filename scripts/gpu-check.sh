#!/usr/bin/env bash
# The agent's context fit on a real GPU (issue 16), as one prepared script for a machine with an
# NVIDIA GPU, nvcc, CMake and python3 but no network. See usage() for the phases and what it prints.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LLAMA_CPP_PYTHON_VERSION=0.3.36   # the test bed's vendored llama.cpp (tests/testbed/cache.py)
TESTBED_CACHE="${PODTUI_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podtui-testbed}"
TESTBED_SRC="$TESTBED_CACHE/llama-cpp-python-$LLAMA_CPP_PYTHON_VERSION/src/vendor/llama.cpp"
BUNDLE="$REPO/build/gpu-check-bundle"     # what --pack writes and the device run reads (carried)
WORK="${GPU_CHECK_WORK:-$REPO/build/gpu-check}"  # sources, build, ballast: kept between runs
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
NVCC="${NVCC:-nvcc}"
PY="${PYTHON:-python3}"
TARGETS=(llama-server llama-fit-params)
MODEL_NAME=fit-small.gguf   # tests/testbed/fit_standin.py FIT_SMALL: trained ctx 4M, so memory decides
CTX_MAX=4194304

usage() {
  cat <<'EOF'
usage: scripts/gpu-check.sh [options]          (on the GPU machine, from the repo root)
       scripts/gpu-check.sh --pack [options]   (here, before: what the GPU machine needs)

The agent's context fit (`fit.search`, `ctx auto`) against a real CUDA out-of-memory:
  1. finds the GPU (nvidia-smi: name, compute capability, memory);
  2. builds the vendored llama.cpp with CUDA for that GPU only (-DGGML_CUDA=ON
     -DCMAKE_CUDA_ARCHITECTURES=<compute cap>, targets llama-server llama-fit-params, -j$(nproc));
     an existing build is reused;
  3. compiles scripts/gpu-ballast.cu and starts it: it holds all but --leave-mib of the free GPU
     memory until the script ends, so the engine meets a real OOM at a known budget;
  4. starts the agent (`python3 -m remote_agent daemon`, standard library only) on the CUDA build
     and runs `fit.search` on a tiny long-context model twice: with the agent's own budget
     (nvidia-smi free memory minus its margin), then with all the free memory as budget (no
     margin), which makes the first launch overshoot by the CUDA context and really run out;
  5. prints each search's launches, every attempt's ctx and ok/OOM, the final ctx, and whether the
     final config loaded (status ready, /health 200, /props n_ctx, a chat completion), with
     nvidia-smi's memory before, under the ballast, while serving and after.
Timings per phase are printed; with $OUT set, $OUT/gpu-check.json holds the summary and
$OUT/gpu-check-logs/ the build, ballast, daemon and engine logs. Exit status 0 only when every
search found a ctx and its final config loaded.

Inputs (first found wins):
  llama.cpp source  --llama-src DIR|TARBALL, build/gpu-check-bundle/llama.cpp-src.tar.gz,
                    the test bed's cache ($PODTUI_TESTBED_CACHE, ~/.cache/podtui-testbed)
  tiny model        --model PATH, build/gpu-check-bundle/fit-small.gguf, the test bed's cache,
                    else written here with the test bed's writer (needs numpy; gguf is taken from
                    the source tree's gguf-py when not installed)

Options:
  --pack             write build/gpu-check-bundle/ (trimmed llama.cpp source ~12 MB + tiny model
                     17 MB) from this machine's test bed; needs no GPU. Carry that folder to the
                     GPU machine (it is git-ignored), then run the script there without --pack.
  --llama-src PATH   llama.cpp source tree or .tar.gz of one
  --model PATH       the GGUF to fit (default: the test bed's fit-small, 4M trained context)
  --bin-dir DIR      use llama-server/llama-fit-params from DIR instead of building
  --build-dir DIR    CUDA build folder (default build/gpu-check/cuda-sm<cc>, kept between runs)
  --leave-mib N      GPU memory the ballast leaves free (default 2048)
  --no-ballast       search against whatever is free (no known budget)
  --ctx-max N        fit.search's ctx_max (default 4194304)
  --jobs N           build parallelism (default: nproc)
  -h, --help         this text
Environment: OUT (summary + logs), NVIDIA_SMI, NVCC, PYTHON (default python3), GPU_CHECK_WORK.
EOF
}

say() { printf 'gpu-check: %s\n' "$*"; }
die() { printf 'gpu-check: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

PACK=0; LLAMA_SRC=""; MODEL=""; BIN_DIR=""; BUILD_DIR=""; LEAVE_MIB=2048; BALLAST=1
JOBS="$(nproc 2>/dev/null || echo 4)"
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --pack) PACK=1 ;;
    --llama-src) LLAMA_SRC="${2:?--llama-src needs a path}"; shift ;;
    --model) MODEL="${2:?--model needs a path}"; shift ;;
    --bin-dir) BIN_DIR="${2:?--bin-dir needs a folder}"; shift ;;
    --build-dir) BUILD_DIR="${2:?--build-dir needs a folder}"; shift ;;
    --leave-mib) LEAVE_MIB="${2:?--leave-mib needs a number}"; shift ;;
    --no-ballast) BALLAST=0 ;;
    --ctx-max) CTX_MAX="${2:?--ctx-max needs a number}"; shift ;;
    --jobs) JOBS="${2:?--jobs needs a number}"; shift ;;
    *) printf 'gpu-check: unknown option %s (see --help)\n' "$1" >&2; exit 2 ;;
  esac
  shift
done
for n in "$LEAVE_MIB" "$CTX_MAX" "$JOBS"; do
  case "$n" in ''|*[!0-9]*) die "$n is not a whole number (see --help)" ;; esac
done
abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
[ -z "$LLAMA_SRC" ] || LLAMA_SRC="$(abs "$LLAMA_SRC")"
[ -z "$MODEL" ] || MODEL="$(abs "$MODEL")"
[ -z "$BIN_DIR" ] || BIN_DIR="$(abs "$BIN_DIR")"
[ -z "$BUILD_DIR" ] || BUILD_DIR="$(abs "$BUILD_DIR")"
cd "$REPO"

# ---------------------------------------------------------------------------------------------
# --pack: on the CPU machine, what the GPU machine cannot fetch (it has no network).
if [ "$PACK" = 1 ]; then
  src="${LLAMA_SRC:-$TESTBED_SRC}"
  [ -f "$src/CMakeLists.txt" ] || die "no llama.cpp source at $src; run scripts/build-llama-server.sh first (it fetches it) or pass --llama-src DIR"
  mkdir -p "$BUNDLE"
  # Everything the CUDA build needs; docs, test data, the web UI's sources and all but the one
  # vocabulary file the tiny models are made from stay behind (176 MB -> about 12 MB packed).
  # Excludes are anchored at the tree's top: src/models/ holds the model architectures' code.
  tmp_tar="$BUNDLE/llama.cpp-src.tar.tmp"
  rm -f "$tmp_tar" "$tmp_tar.gz"
  tar -cf "$tmp_tar" -C "$src" --transform 's,^\.,llama.cpp,' --anchored --no-wildcards-match-slash \
    --exclude=./models --exclude=./docs --exclude=./benches --exclude=./tests --exclude=./media \
    --exclude=./.github --exclude=./.devops --exclude=./tools/ui/src --exclude=./tools/ui/static \
    --exclude=./tools/ui/tests --exclude=./tools/ui/package-lock.json .
  tar -rf "$tmp_tar" -C "$src" --transform 's,^\.,llama.cpp,' ./models/ggml-vocab-llama-spm.gguf
  gzip -6 "$tmp_tar"
  mv "$tmp_tar.gz" "$BUNDLE/llama.cpp-src.tar.gz"
  if [ -n "$MODEL" ]; then
    model="$MODEL"
  else
    pack_py="$PY"; [ -n "${PYTHON:-}" ] || [ ! -x "$REPO/.venv/bin/python" ] || pack_py="$REPO/.venv/bin/python"
    model="$("$pack_py" -c 'from tests.testbed.fit_standin import FIT_SMALL, fit_model; print(fit_model(FIT_SMALL))')"
  fi
  cp "$model" "$BUNDLE/$MODEL_NAME"
  say "packed $(du -sh "$BUNDLE" | cut -f1) into $BUNDLE:"
  for f in "$BUNDLE"/*; do say "  $(basename "$f"): $(stat -c %s "$f") bytes"; done
  say "carry the folder build/gpu-check-bundle to the GPU machine and run scripts/gpu-check.sh there"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# The GPU run. Everything the summary needs is collected in FACTS (key=value lines).
NO_GPU="this script needs an NVIDIA GPU; run it on the device machine"
no_gpu() {   # the summary says so too, for whoever reads $OUT rather than the output
  if [ -n "${OUT:-}" ] && mkdir -p "$OUT" 2>/dev/null; then
    "$PY" -c 'import json, sys; json.dump({"ok": False, "exit_code": 1, "error": sys.argv[2]}, open(sys.argv[1], "w"))' \
      "$OUT/gpu-check.json" "$1" 2>/dev/null || true
  fi
  die "$1"
}
command -v "$NVIDIA_SMI" >/dev/null 2>&1 || no_gpu "$NO_GPU (no nvidia-smi on PATH)"
gpu_csv="$("$NVIDIA_SMI" --query-gpu=index,name,compute_cap,memory.total,memory.used,memory.free \
           --format=csv,noheader,nounits 2>/dev/null | grep -E '^ *[0-9]+ *,' || true)"
if [ -z "$gpu_csv" ]; then
  no_gpu "$NO_GPU (nvidia-smi found no GPU: $("$NVIDIA_SMI" 2>&1 | grep -m 1 . || echo 'no output'))"
fi
[ -n "$BIN_DIR" ] && [ "$BALLAST" = 0 ] || command -v "$NVCC" >/dev/null 2>&1 \
  || [ -x /usr/local/cuda/bin/nvcc ] || no_gpu "$NO_GPU (no nvcc: the CUDA toolkit is needed to build)"
command -v "$NVCC" >/dev/null 2>&1 || NVCC=/usr/local/cuda/bin/nvcc
command -v "$PY" >/dev/null 2>&1 || die "no $PY: the agent needs python 3.11 or newer"

STARTED="$(now)"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"   # sockets and state: short paths, not in $OUT
FACTS="$RUN/facts"; : > "$FACTS"
fact() { printf '%s=%s\n' "$1" "$2" >> "$FACTS"; }
BALLAST_PID=""; BUILD_PID=""
PHASE=""; PHASE_T0=""
phase() {   # phase NAME: close the current phase (its time goes to the summary), open the next
  if [ -n "$PHASE" ]; then
    local s; s="$(since "$PHASE_T0")"; fact "phase_s.$PHASE" "$s"; say "[$PHASE] done in ${s} s"
  fi
  PHASE="$1"; PHASE_T0="$(now)"
  [ -z "$PHASE" ] || say "[$PHASE] …"
}

gpu_mem() {   # gpu_mem LABEL: print and record the GPU's used/free MiB
  local line used free total
  line="$("$NVIDIA_SMI" --id="$GPU_INDEX" --query-gpu=memory.used,memory.free,memory.total \
          --format=csv,noheader,nounits 2>/dev/null | head -n 1 | tr -d ' ')" || true
  IFS=, read -r used free total <<<"$line"
  say "nvidia-smi $1: used ${used:-?} MiB, free ${free:-?} MiB of ${total:-?} MiB"
  fact "mem.$1.used_mib" "${used:-}"; fact "mem.$1.free_mib" "${free:-}"
}

copy_logs() {
  [ -n "${OUT:-}" ] || return 0
  local dest="$OUT/gpu-check-logs"
  mkdir -p "$dest"
  for f in "$WORK/build.log" "$RUN/ballast.log" "$RUN/agent/daemon.log" "$RUN/engine.log"; do
    [ -f "$f" ] || continue
    # a long build log comes back as its end: the error is there
    tail -c 2000000 "$f" > "$dest/$(basename "$f")" || true
  done
}

write_summary() {   # write_summary EXIT_CODE: $OUT/gpu-check.json from FACTS and the driver's JSON
  [ -n "${OUT:-}" ] || return 0
  mkdir -p "$OUT"
  FACTS="$FACTS" FIT_JSON="$RUN/fit.json" RC="$1" "$PY" - "$OUT/gpu-check.json" <<'PY' || true
import json, os, sys
facts = {}
for line in open(os.environ["FACTS"]):
    key, _, value = line.rstrip("\n").partition("=")
    try:
        value = json.loads(value)
    except ValueError:
        pass
    node = facts
    *path, last = key.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value
try:
    facts["searches"] = json.load(open(os.environ["FIT_JSON"]))["searches"]
except (OSError, ValueError, KeyError):
    facts.setdefault("searches", [])
facts["exit_code"] = int(os.environ["RC"])
facts["ok"] = facts["exit_code"] == 0
json.dump(facts, open(sys.argv[1], "w"), indent=1, sort_keys=True)
PY
}

on_exit() {
  local rc=$?
  set +e
  if [ -n "$PHASE" ] && [ "$rc" != 0 ]; then fact failed_phase "\"$PHASE\""; say "[$PHASE] failed"; fi
  if [ -n "$BUILD_PID" ] && kill -0 "$BUILD_PID" 2>/dev/null; then
    # cmake --build and the ninja (or make) under it, which stops its compilers
    kill -TERM $(pgrep -P "$BUILD_PID" 2>/dev/null) "$BUILD_PID" 2>/dev/null; wait "$BUILD_PID" 2>/dev/null
  fi
  if [ -n "$BALLAST_PID" ] && kill -0 "$BALLAST_PID" 2>/dev/null; then
    kill -TERM "$BALLAST_PID" 2>/dev/null; wait "$BALLAST_PID" 2>/dev/null
    say "ballast released"; gpu_mem after
  fi
  fact total_s "$(since "$STARTED")"
  copy_logs; write_summary "$rc"
  say "total $(since "$STARTED") s; $([ "$rc" = 0 ] && echo PASSED || echo "FAILED (exit $rc)")"
  [ -z "${OUT:-}" ] || say "summary: $OUT/gpu-check.json"
  rm -rf "$RUN"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. the GPU ------------------------------------------------------------------------------
phase detect
want="${CUDA_VISIBLE_DEVICES:-}"; want="${want%%,*}"
case "$want" in ''|*[!0-9]*) want="" ;; esac
GPU_LINE="$(printf '%s\n' "$gpu_csv" | awk -F', *' -v w="$want" 'w == "" || $1 == w { print; exit }')"
[ -n "$GPU_LINE" ] || die "nvidia-smi lists no GPU with index $want (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-})"
IFS=, read -r GPU_INDEX GPU_NAME GPU_CC GPU_TOTAL _ _ <<<"$(printf '%s' "$GPU_LINE" | sed 's/, */,/g')"
ARCH="${GPU_CC//./}"
case "$ARCH" in ''|*[!0-9]*) die "nvidia-smi gave no compute capability for GPU $GPU_INDEX ($GPU_CC); update the driver" ;; esac
# The ballast, the agent and every engine it starts see this one GPU, numbered as nvidia-smi does.
export CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES="$GPU_INDEX"
say "GPU $GPU_INDEX: $GPU_NAME, compute capability $GPU_CC (sm_$ARCH), $GPU_TOTAL MiB; $JOBS build jobs"
say "nvcc: $("$NVCC" --version 2>/dev/null | grep -o 'release [0-9.]*' || echo none); cmake: $(cmake --version 2>/dev/null | head -n 1 | grep -o '[0-9][0-9.]*' || echo none); $("$PY" --version 2>&1)"
fact gpu.index "$GPU_INDEX"; fact gpu.name "\"$GPU_NAME\""; fact gpu.compute_cap "\"$GPU_CC\""
fact gpu.total_mib "$GPU_TOTAL"
gpu_mem before

# --- 2. llama.cpp with CUDA --------------------------------------------------------------------
SRC=""
resolve_source() {
  local given="${LLAMA_SRC:-}"
  if [ -z "$given" ]; then
    for c in "$BUNDLE/llama.cpp-src.tar.gz" "$TESTBED_SRC"; do [ -e "$c" ] && { given="$c"; break; }; done
  fi
  [ -n "$given" ] || die "no llama.cpp source: pass --llama-src, or run scripts/gpu-check.sh --pack on a machine with the test bed and carry build/gpu-check-bundle here"
  if [ -d "$given" ]; then
    [ -f "$given/ggml/src/ggml-cuda/CMakeLists.txt" ] || die "$given is not a llama.cpp source tree"
    SRC="$given"; return
  fi
  # A tarball is unpacked once into $WORK/llama.cpp (again only when it changes).
  local stamp; stamp="$(cksum < "$given")"
  SRC="$WORK/llama.cpp"
  if [ ! -f "$SRC/.unpacked-from" ] || [ "$(cat "$SRC/.unpacked-from")" != "$stamp" ]; then
    rm -rf "$SRC"; mkdir -p "$SRC"
    tar -xzf "$given" -C "$SRC" --strip-components=1
    printf '%s' "$stamp" > "$SRC/.unpacked-from"
  fi
  [ -f "$SRC/ggml/src/ggml-cuda/CMakeLists.txt" ] || die "$given holds no llama.cpp source tree"
}

if [ -n "$BIN_DIR" ]; then
  phase build
  for t in "${TARGETS[@]}"; do [ -x "$BIN_DIR/$t" ] || die "--bin-dir $BIN_DIR has no $t"; done
  say "using the engine in $BIN_DIR (no build)"
  fact build.bin_dir "\"$BIN_DIR\""
else
  phase source
  mkdir -p "$WORK"
  resolve_source
  say "llama.cpp source: $SRC"
  phase configure
  BUILD_DIR="${BUILD_DIR:-$WORK/cuda-sm$ARCH}"
  # A build dir configured from another source tree cannot be reused.
  if [ -f "$BUILD_DIR/CMakeCache.txt" ] && ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$SRC" "$BUILD_DIR/CMakeCache.txt"; then
    rm -rf "$BUILD_DIR"
  fi
  : > "$WORK/build.log"
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    gen=(); command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
    # One GPU architecture, FlashAttention kernels for the f16 cache only, no fatbin compression,
    # and nothing that reaches the network (prebuilt web UI, OpenSSL): the build is the long pole
    # of the 15-minute device session.
    if ! cmake -S "$SRC" -B "$BUILD_DIR" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DCMAKE_CUDA_COMPILER="$(command -v "$NVCC")" \
        -DGGML_CUDA_FA_QUANTS=f16-f16 -DGGML_CUDA_COMPRESSION_MODE=none -DGGML_CUDA_NCCL=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >> "$WORK/build.log" 2>&1; then
      tail -n 30 "$WORK/build.log" >&2
      rm -f "$BUILD_DIR/CMakeCache.txt"   # configure again next time
      if grep -q 'CUDA::cublas' "$WORK/build.log"; then
        die "cmake configure failed: this CUDA toolkit has no cuBLAS (cublas_v2.h, libcublas), which ggml-cuda needs"
      fi
      die "cmake configure failed (log: $WORK/build.log)"
    fi
  else
    say "reusing the configured build in $BUILD_DIR"
  fi
  phase build
  # In the background, so that a line every 30 s shows how far it got (a run that times out
  # still says where the time went).
  cmake --build "$BUILD_DIR" --target "${TARGETS[@]}" -j"$JOBS" >> "$WORK/build.log" 2>&1 &
  BUILD_PID=$!
  ticks=0
  while kill -0 "$BUILD_PID" 2>/dev/null; do
    sleep 1; ticks=$((ticks + 1))
    if [ $((ticks % 30)) = 0 ]; then
      say "  building, ${ticks} s: $(grep -oE '^\[[0-9]+/[0-9]+\]|^\[ *[0-9]+%\]' "$WORK/build.log" | tail -n 1)"
    fi
  done
  if ! wait "$BUILD_PID"; then
    BUILD_PID=""
    grep -iE 'error|fatal' "$WORK/build.log" | head -n 20 >&2 || true
    tail -n 20 "$WORK/build.log" >&2
    die "the CUDA build failed (log: $WORK/build.log)"
  fi
  BUILD_PID=""
  BIN_DIR="$BUILD_DIR/bin"
  for t in "${TARGETS[@]}"; do [ -x "$BIN_DIR/$t" ] || die "the build finished without $BIN_DIR/$t"; done
  say "built ${TARGETS[*]} in $BIN_DIR"
  fact build.bin_dir "\"$BIN_DIR\""; fact build.arch "\"$ARCH\""
fi

# --- 3. the tiny model -----------------------------------------------------------------------
phase model
if [ -z "$MODEL" ]; then
  for c in "$BUNDLE/$MODEL_NAME" "$TESTBED_CACHE/tiny-models-v1/$MODEL_NAME" "$WORK/models/$MODEL_NAME"; do
    [ -f "$c" ] && { MODEL="$c"; break; }
  done
fi
if [ -z "$MODEL" ]; then
  # The test bed's own writer (tests/testbed/models.py) with the test bed's spec; gguf comes from
  # the llama.cpp tree when it is not installed. Its `metadata` module imports yaml, used only
  # for reading model cards: a stand-in module keeps it importable without PyYAML.
  [ -n "$SRC" ] || resolve_source
  say "writing $MODEL_NAME with tests/testbed/models.py (numpy + gguf)"
  mkdir -p "$WORK/models"
  VOCAB="$SRC/models/ggml-vocab-llama-spm.gguf" GGUF_PY="$SRC/gguf-py" "$PY" - "$WORK/models" <<'PY' \
    || die "could not write the tiny model here (numpy missing?); pass --model PATH or carry build/gpu-check-bundle"
import os, sys, types
from pathlib import Path
try:
    import gguf  # noqa: F401
except ImportError:
    try:
        import yaml  # noqa: F401
    except ImportError:
        sys.modules["yaml"] = types.ModuleType("yaml")
    sys.path.insert(0, os.environ["GGUF_PY"])
sys.path.insert(0, os.getcwd())
from tests.testbed import cache, models
from tests.testbed.fit_standin import FIT_SMALL
cache.vocab_gguf = lambda: Path(os.environ["VOCAB"])
models.write_model(FIT_SMALL, Path(sys.argv[1]))
PY
  MODEL="$WORK/models/$MODEL_NAME"
fi
[ -f "$MODEL" ] || die "no model at $MODEL"
say "model: $MODEL ($(( $(stat -c %s "$MODEL") / 1048576 )) MiB)"
fact model "\"$MODEL\""

# --- 4. the ballast --------------------------------------------------------------------------
if [ "$BALLAST" = 1 ]; then
  phase ballast
  mkdir -p "$WORK"
  "$NVCC" -O2 -arch="sm_$ARCH" -o "$WORK/gpu-ballast" "$REPO/scripts/gpu-ballast.cu" \
    || die "nvcc could not build scripts/gpu-ballast.cu"
  "$WORK/gpu-ballast" "$LEAVE_MIB" 1800 > "$RUN/ballast.log" 2>&1 &
  BALLAST_PID=$!
  for _ in $(seq 600); do
    grep -q '^holding' "$RUN/ballast.log" && break
    kill -0 "$BALLAST_PID" 2>/dev/null || { cat "$RUN/ballast.log" >&2; BALLAST_PID=""; die "the ballast exited before holding memory"; }
    sleep 0.1
  done
  grep -q '^holding' "$RUN/ballast.log" || die "the ballast held nothing within 60 s"
  say "ballast (pid $BALLAST_PID): $(head -n 1 "$RUN/ballast.log")"
  held="$(awk '/^holding/ { print $2; exit }' "$RUN/ballast.log")"
  fact ballast.held_mib "$held"; fact ballast.leave_mib "$LEAVE_MIB"
  gpu_mem ballast
else
  fact ballast.held_mib 0
fi

# --- 5. the agent's fit.search on the GPU ----------------------------------------------------
phase fit
FREE_MIB="$("$NVIDIA_SMI" --id="$GPU_INDEX" --query-gpu=memory.free --format=csv,noheader,nounits | head -n 1 | tr -d ' ')"
say "known budget: $FREE_MIB MiB free on the GPU for the engine"
fact budget_free_mib "$FREE_MIB"
export GPU_CHECK_BIN="$BIN_DIR" GPU_CHECK_MODEL="$MODEL" GPU_CHECK_RUN="$RUN" GPU_CHECK_CTX_MAX="$CTX_MAX"
export GPU_CHECK_FREE_MIB="$FREE_MIB" GPU_CHECK_GPU_INDEX="$GPU_INDEX" GPU_CHECK_NVIDIA_SMI="$NVIDIA_SMI"
"$PY" - <<'PY'
"""Drive the real agent daemon the way the tests do (tests/testbed/agent_daemon.py) and check
that each search's final configuration serves."""
import json, os, re, signal, subprocess, sys, time, urllib.request
from pathlib import Path

sys.path.insert(0, os.getcwd())
from tests.testbed.agent_daemon import DaemonProcess  # noqa: E402
from tests.testbed.llama import auth, chat_completion  # noqa: E402

MiB = 1 << 20
env = os.environ
RUN = Path(env["GPU_CHECK_RUN"])
MODEL, CTX_MAX, FREE_MIB = env["GPU_CHECK_MODEL"], int(env["GPU_CHECK_CTX_MAX"]), int(env["GPU_CHECK_FREE_MIB"])
BUFFER_LINE = re.compile(r"buffer size|out of memory|cudaMalloc failed|failed to allocate|CUDA error", re.I)


def say(text: str) -> None:
    print(f"gpu-check: {text}", flush=True)


def _stop(signum, frame):  # SIGTERM from a timeout: stop the daemon and its engine on the way out
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _stop)


def gpu_mem() -> tuple[int, int]:
    out = subprocess.run([env["GPU_CHECK_NVIDIA_SMI"], f"--id={env['GPU_CHECK_GPU_INDEX']}",
                          "--query-gpu=memory.used,memory.free", "--format=csv,noheader,nounits"],
                         stdout=subprocess.PIPE, text=True, timeout=30).stdout
    used, free = (int(float(v)) for v in out.splitlines()[0].split(","))
    return used, free


def call(client, method: str, params: dict) -> dict:
    """One request; the search's progress events are printed as they come."""
    client.send({"id": "check-fit", "method": method, "params": params})
    while True:
        message = client.read()
        if message.get("id") != "check-fit":
            continue
        if "event" not in message:
            return message
        data = message.get("data") or {}
        if data.get("phase") == "fit" and data.get("message"):
            say(f"  agent: {data['message']}")


def engine_lines(client, since: float = 0.0) -> list[str]:
    """The engine's output lines the agent kept (logs.tail), those logged after `since` (Unix time)."""
    client.send({"id": "check-logs", "method": "logs.tail", "params": {"n": 5000, "source": "engine"}})
    lines = []
    while True:
        message = client.read()
        if message.get("id") != "check-logs":
            continue
        if "event" not in message:
            return lines
        data = message.get("data") or {}
        if data.get("ts", since) >= since:
            lines.append(str(data.get("line", data)))


def http_status(url: str, headers: dict) -> int | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status
    except OSError as exc:
        return getattr(exc, "code", None)


def check_serving(daemon, client, ctx: int) -> dict:
    """Did the search's final configuration load, and does it answer?"""
    status = client.call("status")[1].get("result", {})
    key = client.call("engine.api_key")[1].get("result", {}).get("api_key")
    base = f"http://127.0.0.1:{daemon.port}"
    check = {"state": status.get("state"), "status_ctx": status.get("ctx"),
             "health": http_status(f"{base}/health", auth(key))}
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{base}/props", headers=auth(key)), timeout=10) as r:
            check["n_ctx"] = json.load(r)["default_generation_settings"]["n_ctx"]
    except (OSError, ValueError, KeyError) as exc:
        check["n_ctx"], check["props_error"] = None, str(exc)
    try:
        answer = chat_completion(base, "Hello", max_tokens=8, timeout=60, api_key=key)
        check["chat_tokens"] = answer.get("usage", {}).get("completion_tokens")
        check["chat_ok"] = bool(answer.get("choices"))
    except (OSError, ValueError) as exc:
        check["chat_ok"], check["chat_error"] = False, str(exc)
    check["gpu_used_mib"], check["gpu_free_mib"] = gpu_mem()
    check["engine_gpu_mib"] = FREE_MIB - check["gpu_free_mib"]  # all the engine holds, CUDA context included
    check["loaded"] = (check["state"] == "ready" and check["status_ctx"] == ctx and check["health"] == 200
                       and check["n_ctx"] == ctx and check["chat_ok"])
    return check


def search(daemon, client, name: str, params: dict) -> dict:
    say(f"[{name}] fit.search {json.dumps(params)}")
    launches_before = daemon.log_text().count("started llama-server")
    started, started_ts = time.monotonic(), time.time()
    reply = call(client, "fit.search", params)
    record = {"name": name, "params": params, "wall_s": round(time.monotonic() - started, 1)}
    record["engine_starts_in_agent_log"] = daemon.log_text().count("started llama-server") - launches_before
    if "error" in reply:
        record["error"] = reply["error"]
        say(f"  FAILED: {reply['error'].get('code')}: {reply['error'].get('message')}")
        for line in engine_lines(client, started_ts)[-25:]:
            say(f"  engine| {line}")
        record["loaded"] = False
        return record
    fit = reply["result"]
    record["fit"] = fit
    say(f"  budget {fit['budget_bytes'] // MiB} MiB ({fit['budget_source']}, {fit['device']}; "
        f"{fit['free_bytes'] // MiB} MiB free), first estimate ctx {fit['estimate']['first_ctx']}")
    for i, a in enumerate(fit["attempts"], 1):
        how = "ok" if a["ok"] else ("OOM" + (f" (failed allocation {a['failed_bytes'] / MiB:.0f} MiB)"
                                             if a.get("failed_bytes") else ""))
        say(f"  attempt {i}: ctx {a['ctx']} {how}")
    say(f"  launches {fit['launches']} (agent log: {record['engine_starts_in_agent_log']} engine starts), "
        f"final ctx {fit['ctx']}, limited by {fit['limited_by']}, {record['wall_s']} s")
    check = check_serving(daemon, client, fit["ctx"])
    record.update(check)
    say(f"  final config loaded: {'yes' if check['loaded'] else 'NO'} (state {check['state']}, "
        f"/health {check['health']}, n_ctx {check['n_ctx']}, chat {'ok' if check['chat_ok'] else 'failed'}"
        f"{', ' + str(check.get('chat_tokens')) + ' tokens' if check['chat_ok'] else ''}); "
        f"GPU while serving: used {check['gpu_used_mib']} MiB, free {check['gpu_free_mib']} MiB")
    predicted = fit["estimate"]["need_bytes"] // MiB
    say(f"  the engine holds {check['engine_gpu_mib']} MiB of the {FREE_MIB} MiB that were free; the search "
        f"predicted {predicted} MiB of llama.cpp buffers at that ctx, so {check['engine_gpu_mib'] - predicted} MiB "
        f"is beyond them (CUDA context, cuBLAS, pools; the agent's margin is 512 MiB)")
    for key in ("props_error", "chat_error"):
        if key in check:
            say(f"  {key}: {check[key]}")
    # Out-of-memory and allocation lines of this search's launches, in the engine's own words
    for line in engine_lines(client, started_ts):
        if BUFFER_LINE.search(line):
            say(f"  engine| {line.strip()[:200]}")
    return record


def main() -> int:
    root = RUN / "agent"
    root.mkdir(parents=True, exist_ok=True)
    daemon = DaemonProcess(root, Path(env["GPU_CHECK_BIN"]), args=["--no-autostart", "--health-timeout", "90"])
    searches = []
    try:
        daemon.start(timeout=60)
        say(f"agent daemon up (pid {daemon.proc.pid}), engine port {daemon.port}")
        client = daemon.client()
        client.sock.settimeout(600)
        common = {"model": MODEL, "ctx_max": CTX_MAX, "fresh": True}
        searches.append(search(daemon, client, "agent budget", dict(common)))
        client.call("engine.stop")
        # All the free memory as budget, no margin: the first launch overshoots by what the engine
        # needs beyond llama.cpp's buffers (CUDA context, cuBLAS), so it meets a real OOM and the
        # search must recover from the failed allocation the log names.
        searches.append(search(daemon, client, "all free memory, no margin",
                               {**common, "budget_bytes": FREE_MIB * MiB}))
        with open(RUN / "engine.log", "w") as f:
            f.write("\n".join(engine_lines(client)) + "\n")
        client.call("engine.stop")
        client.close()
    finally:
        daemon.stop()
        (RUN / "fit.json").write_text(json.dumps({"searches": searches}, indent=1))
    ooms = sum(1 for s in searches for a in s.get("fit", {}).get("attempts", []) if not a["ok"])
    say(f"searches: {len(searches)}, all final configs loaded: "
        f"{'yes' if searches and all(s.get('loaded') for s in searches) else 'NO'}; real OOMs met: {ooms}")
    return 0 if len(searches) == 2 and all(s.get("loaded") for s in searches) else 1


sys.exit(main())
PY
phase ""

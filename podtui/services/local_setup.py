"""`podtui local setup`: build llama.cpp's llama-server for this machine from the pinned source
the pod image and the test bed use, so the local pod can serve a model.

The source is llama.cpp as vendored in the llama-cpp-python sdist (version and sha256 pinned
below; it carries llama.cpp commit 0c1e57098, the image's tag b11312). It is fetched with pip, the
only way to a package registry this project uses (no URL here), checked against its sha256, and
built with CMake: for the CPU, or with CUDA when `nvcc` is found. The build is cached under
podtui's cache dir (`podtui locate`), keyed by version and backend, and reused; a second setup
costs nothing. scripts/build-llama-server.sh builds the test bed through this same code.

Why our own builder and not a library: no package ships llama-server binaries for Linux and CUDA
that match the image's llama.cpp; llama-cpp-python builds only the library, not the server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from podtui import paths
from podtui.errors import PodtuiError

SDIST = "llama-cpp-python"
SDIST_VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_CPP_TAG = "b11312"  # the tag image/Dockerfile builds: the same commit (0c1e57098)
TARGETS = ("llama-server", "llama-fit-params", "ggml-rpc-server")
BACKENDS = ("cpu", "cuda")

Progress = Callable[[str], None]
_PERCENT = re.compile(r"^\[\s*(\d+)%\]")


class SetupError(PodtuiError):
    """The engine could not be built; `fix` says what to do."""


@dataclass(frozen=True)
class SetupResult:
    """bin_dir: where llama-server is; built: False when a cached build was reused; seconds: wall time."""
    bin_dir: Path
    backend: str
    built: bool
    seconds: float
    source: Path

    def as_dict(self) -> dict:
        return {"bin_dir": str(self.bin_dir), "backend": self.backend, "built": self.built,
                "seconds": round(self.seconds, 1), "source": str(self.source), "llama_cpp": LLAMA_CPP_TAG}


def engines_root() -> Path:
    """Where podtui keeps engine builds: <cache dir>/engines."""
    return paths.cache_dir() / "engines"


def build_root(backend: str) -> Path:
    """The cache folder of one build: <engines root>/llama.cpp-b11312-<backend>."""
    return engines_root() / f"llama.cpp-{LLAMA_CPP_TAG}-{backend}"


def has_binaries(bin_dir: Path) -> bool:
    return all((bin_dir / t).is_file() and os.access(bin_dir / t, os.X_OK) for t in TARGETS)


def installed_bin_dir() -> Path | None:
    """The bin dir of a finished `local setup` (CUDA preferred), or None."""
    for backend in ("cuda", "cpu"):
        candidate = build_root(backend) / "build" / "bin"
        if has_binaries(candidate):
            return candidate
    return None


def choose_backend(requested: str = "auto") -> str:
    """"cuda" when asked, or on auto when `nvcc` is on PATH; else "cpu"."""
    if requested in BACKENDS:
        return requested
    return "cuda" if shutil.which("nvcc") else "cpu"


def setup(backend: str = "auto", *, root: Path | None = None, source: Path | None = None,
          jobs: int | None = None, on_progress: Progress = lambda line: None) -> SetupResult:
    """Build llama-server, llama-fit-params and ggml-rpc-server into <root>/build/bin (root: the
    backend's build_root), unless they are there already.

    source: the sdist tarball, or an unpacked llama.cpp tree, to build instead of fetching one.
    on_progress(line): one line per phase and per 10% of the build.
    Raises SetupError naming what is missing (cmake, a compiler, pip, the source) and the fix.
    """
    backend = choose_backend(backend)
    root = Path(root) if root is not None else build_root(backend)
    bin_dir = root / "build" / "bin"
    started = time.monotonic()
    if has_binaries(bin_dir):
        return SetupResult(bin_dir, backend, False, time.monotonic() - started, root / "src")
    missing = [name for name, found in (("cmake", shutil.which("cmake")),
                                        ("a C++ compiler", any(shutil.which(c) for c in ("c++", "g++", "clang++"))))
               if not found]
    if missing:
        raise SetupError(f"{' and '.join(missing)} not found, and building llama-server needs them",
                         "install CMake and a C++ compiler (Debian/Ubuntu: apt install cmake g++), "
                         "then run `podtui local setup` again")
    tree = _llama_tree(root, source, on_progress)
    _build(tree, root / "build", backend, jobs or os.cpu_count() or 2, on_progress)
    if not has_binaries(bin_dir):
        raise SetupError(f"the build finished but {bin_dir} lacks one of {', '.join(TARGETS)}",
                         f"see {root / 'build.log'}, then remove {root} and run `podtui local setup` again")
    return SetupResult(bin_dir, backend, True, time.monotonic() - started, tree)


def _llama_tree(root: Path, source: Path | None, progress: Progress) -> Path:
    """The llama.cpp source tree to build: source (a tree or a tarball), else the pinned sdist."""
    if source is not None and (Path(source) / "CMakeLists.txt").is_file():
        return Path(source)
    tree = root / "src" / "vendor" / "llama.cpp"
    if (tree / "CMakeLists.txt").is_file():
        return tree
    tarball = Path(source) if source is not None else _download_sdist(root / "dl", progress)
    progress(f"unpacking {tarball.name}")
    unpacked = root / "src"
    shutil.rmtree(unpacked, ignore_errors=True)
    unpacked.mkdir(parents=True)
    try:
        with tarfile.open(tarball) as archive:
            top = archive.getnames()[0].split("/")[0]
            archive.extractall(root / "src-tmp", filter="data")
        shutil.rmtree(unpacked)
        os.replace(root / "src-tmp" / top, unpacked)
        shutil.rmtree(root / "src-tmp", ignore_errors=True)
    except (OSError, tarfile.TarError, IndexError) as exc:
        raise SetupError(f"could not unpack {tarball}: {exc}", f"remove {root} and run `podtui local setup` again") \
            from None
    if not (tree / "CMakeLists.txt").is_file():
        raise SetupError(f"{tarball.name} holds no vendor/llama.cpp", f"pass the {SDIST} {SDIST_VERSION} sdist "
                         "as --source, or remove it and let podtui fetch it")
    return tree


def _download_sdist(dl: Path, progress: Progress) -> Path:
    """The pinned sdist, fetched with pip and checked against its sha256 (--require-hashes)."""
    dl.mkdir(parents=True, exist_ok=True)
    wanted = dl / f"{SDIST.replace('-', '_')}-{SDIST_VERSION}.tar.gz"
    if wanted.is_file():
        return wanted
    requirements = dl / "requirements.txt"
    requirements.write_text(f"{SDIST}=={SDIST_VERSION} --hash=sha256:{SDIST_SHA256}\n")
    progress(f"fetching llama.cpp {LLAMA_CPP_TAG} ({SDIST} {SDIST_VERSION} sdist) with pip")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", SDIST,
               "--require-hashes", "-r", str(requirements), "-d", str(dl)]
    try:
        out = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"pip could not fetch the llama.cpp source: {exc}",
                         "check that pip works here (`python -m pip --version`), or pass --source") from None
    if out.returncode != 0 or not wanted.is_file():
        last = (out.stdout.strip().splitlines() or ["no output"])[-1]
        fix = ("install pip into podtui's environment, or " if "No module named pip" in out.stdout else
               "check this machine's network and pip configuration, or ")
        raise SetupError(f"pip could not fetch {SDIST}=={SDIST_VERSION}: {last}",
                         fix + f"download the {SDIST} {SDIST_VERSION} sdist yourself and pass it as --source")
    return wanted


def cmake_flags(backend: str) -> list[str]:
    """The CMake configuration: llama.cpp's server tools only, RPC on (seed 003), no curl (podtui
    downloads models itself); CUDA for the GPUs of this machine, or the CPU tuned for it."""
    flags = ["-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DGGML_RPC=ON", "-DLLAMA_BUILD_TESTS=OFF",
             "-DLLAMA_BUILD_EXAMPLES=OFF", "-DGGML_NATIVE=ON"]
    if backend == "cuda":
        flags += ["-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=native"]
    return flags


def _build(tree: Path, build: Path, backend: str, jobs: int, progress: Progress) -> None:
    log_path = build.parent / "build.log"
    progress(f"building {', '.join(TARGETS)} for the {backend.upper()} with {jobs} jobs "
             f"(about 7 minutes on 2 cores; log: {log_path})")
    with open(log_path, "w") as log:
        _run(["cmake", "-S", str(tree), "-B", str(build), *cmake_flags(backend)], log, log_path, progress)
        _run(["cmake", "--build", str(build), "--target", *TARGETS, f"-j{jobs}"], log, log_path, progress)


def _run(command: list[str], log, log_path: Path, progress: Progress) -> None:
    """Run command with its output into log, reporting build percentages every 10%."""
    log.write("$ " + " ".join(command) + "\n")
    log.flush()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    shown = -10
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        match = _PERCENT.match(line)
        if match and int(match.group(1)) >= shown + 10:
            shown = int(match.group(1)) // 10 * 10
            progress(f"build {shown}%")
    if proc.wait() != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
        raise SetupError(f"{command[0]} {command[1]} failed (exit {proc.returncode}): {' '.join(tail)[-300:]}",
                         f"see {log_path}; a missing compiler or CUDA toolkit is the usual cause "
                         "(`podtui local setup --cpu` builds without CUDA)")

"""A real koboldcpp (CPU build from the test bed cache, scripts/build-koboldcpp.sh) on a tiny model.

The build is not made here: it takes minutes, so scripts/test.sh makes it once and tests that need
it skip with KoboldcppNotBuilt's reason when it is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.testbed import cache
from tests.testbed.procs import free_port, stop_process

KOBOLDCPP_VERSION = "1.76"

# What seed 000 starts koboldcpp with besides model, context and address; without CUDA the CUDA
# flags are accepted and ignored (koboldcpp falls back to its CPU library).
SEED_000_FLAGS = ("--gpulayers", "999", "--usecublas", "mmq", "--flashattention", "--ignoremissing",
                  "--skiplauncher")


class KoboldcppNotBuilt(RuntimeError):
    """The test bed has no koboldcpp build; `fix` says how to make one."""

    def __init__(self, missing: Path):
        self.missing = missing
        self.fix = "run scripts/build-koboldcpp.sh (about 4 minutes on 2 cores; scripts/test.sh runs it)"
        super().__init__(f"koboldcpp {KOBOLDCPP_VERSION} is not built ({missing} is missing): {self.fix}")


def koboldcpp_root() -> Path:
    return cache.cache_root() / f"koboldcpp-{KOBOLDCPP_VERSION}"


def koboldcpp_binary() -> Path:
    """The `koboldcpp` wrapper the build installs; KoboldcppNotBuilt when the build is missing."""
    root = koboldcpp_root()
    for part in (root / "bin" / "koboldcpp", root / "src" / "koboldcpp_default.so"):
        if not part.exists():
            raise KoboldcppNotBuilt(part)
    return root / "bin" / "koboldcpp"


def koboldcpp_help(binary: Path, timeout: float = 60.0) -> str:
    """`koboldcpp --help` as text: 1.76 has no --version, and its help lists every flag it takes."""
    out = subprocess.run([str(binary), "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=timeout, check=True, stdin=subprocess.DEVNULL)
    return out.stdout


def get_json(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


@dataclass
class KoboldcppServer:
    binary: Path
    model: Path
    ctx: int = 2048
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    log_path: Path | None = None
    proc: subprocess.Popen | None = None
    ready_seconds: float | None = None  # start to first /api/v1/model answer

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [str(self.binary), "--model", str(self.model), "--contextsize", str(self.ctx),
                "--host", "127.0.0.1", "--port", str(self.port), *SEED_000_FLAGS, *self.extra_args]

    def start(self, timeout: float = 120.0) -> "KoboldcppServer":
        """Start it and wait until /api/v1/model answers: koboldcpp listens only after the model loaded."""
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        began = time.monotonic()
        # Unbuffered, so the log shows how far loading got when it fails.
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if log is not subprocess.DEVNULL:
            log.close()
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"koboldcpp exited with {self.proc.returncode} while loading{self._log_tail()}")
            try:
                get_json(f"{self.base_url}/api/v1/model", timeout=1)
                self.ready_seconds = time.monotonic() - began
                return self
            except (OSError, ValueError):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"koboldcpp did not answer /api/v1/model within {timeout}s{self._log_tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def _log_tail(self, lines: int = 20) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "; log ends:\n" + "\n".join(tail)


# A DOUBLE, not koboldcpp: a newer release cannot be built here (no source newer than 1.76), so this
# script answers only the two questions the adapter asks (`--help`, and `--contextsize` out of
# range) the way 1.102's argument parser does, read from its koboldcpp.py (README, "Versions
# tried"). It serves nothing; tests use it only for what the adapter passes to such a version.
NEWER_HELP = """usage: koboldcpp.py [-h] [--model [filename]] [--port [portnumber]]
KoboldCpp Server - Version 1.102
  --contextsize [256 to 262144]
  --usecuda [[lowvram|normal] [main GPU ID] [mmq|nommq] [rowsplit] ...], --usecublas
  --gpulayers [[GPU layers]]
  --flashattention, --flash-attn, -fa
  --quantkv [quantization level 0/1/2]
  --useswa              If enabled, uses SWA mode, which reduces memory usage but disables context shifting.
  --defaultgenamt DEFAULTGENAMT
  --ignoremissing --skiplauncher --password [API key] --blasbatchsize --host --port --model
"""


def newer_koboldcpp_double(directory: Path) -> Path:
    """A `koboldcpp` script in directory that answers like 1.102's argument parser (see NEWER_HELP)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "help.txt").write_text(NEWER_HELP)
    script = directory / "koboldcpp"
    script.write_text(
        "#!/bin/sh\n# A double of koboldcpp 1.102's argument parser (tests/testbed/koboldcpp.py); it serves nothing.\n"
        'if [ "$1" = "--contextsize" ] && [ "$2" -gt 262144 ]; then\n'
        '  echo "koboldcpp.py: error: argument --contextsize/-c/--ctx-size: must be within [256, 262144]"; exit 2\n'
        "fi\n"
        f'cat "{directory / "help.txt"}"\n')
    script.chmod(0o755)
    return script

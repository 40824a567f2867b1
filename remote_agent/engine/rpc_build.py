"""What the installed llama.cpp build says about itself: its version and the RPC protocol it speaks.

Every pod of a cluster must run the same llama.cpp build. The client accepts a server only with the
same protocol major and a minor no newer than its own, and it aborts on anything else (RPC.md fact
13). So `status` shows both facts, and a server compares each backend's HELLO answer with its own
protocol before it starts llama-server.

- The build: `llama-server --version` prints `version: 0.5.0-dev (build 1, commit 0c1e570)` to
  stderr in about 20 ms.
- The protocol and the devices: ggml-rpc-server has no `--version`, an unknown flag exits 0
  (fact 2). It prints its banner (`Starting RPC server v7.0.0`, then one line per device with
  total and free MiB) before it binds. Given a host that is not a numeric address
  (`-H not-an-address`) it prints the banner, then `Invalid host address`, and exits 0 without
  binding anything: about 10 ms on the test bed. On a GPU pod this initialises the devices once,
  so it runs once per binary and never beside a running backend (the backend reads the banner of
  the server it started instead).

Both run at most once per binary (path, size, mtime). Standard library only.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from remote_agent.child_env import without_secrets
from remote_agent.engine.rpc_wire import RpcVersion

RUN_TIMEOUT_S = 60.0  # a GPU pod initialises its devices for the banner
NOT_AN_ADDRESS = "not-an-address"  # makes ggml-rpc-server print its banner and exit without binding
_VERSION = re.compile(r"Starting RPC server v(\d+\.\d+\.\d+)")
_DEVICE = re.compile(r"^\s+(\S+): (.*) \((\d+) MiB, (\d+) MiB free\)\s*$")
_BUILD = re.compile(r"version:\s*(.+)")
_LISTED = re.compile(r"^\s*(RPC\d+): (\S+) \((\d+) MiB, (\d+) MiB free\)")
log = logging.getLogger("remote_agent.engine")


@dataclass(frozen=True)
class RpcDevice:
    """One device a ggml-rpc-server lends (its banner's line): name (CPU, CUDA0, …), description,
    total_mib and free_mib (at the server's start)."""
    name: str
    description: str
    total_mib: int
    free_mib: int


@dataclass(frozen=True)
class RpcBanner:
    """What a ggml-rpc-server printed when it started: protocol (None: not printed) and devices."""
    protocol: RpcVersion | None = None
    devices: tuple[RpcDevice, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """Whether the whole banner (version and at least one device) was read."""
        return self.protocol is not None and bool(self.devices)

    def to_dict(self) -> dict:
        """{"protocol": "7.0.0" | None, "devices": [{"name", "description", "total_mib", "free_mib"}]}."""
        return {"protocol": str(self.protocol) if self.protocol else None,
                "devices": [asdict(device) for device in self.devices]}


def parse_banner(lines: list[str]) -> RpcBanner:
    """The protocol version and devices in a ggml-rpc-server's output lines (RPC.md §1.2)."""
    protocol = None
    devices = []
    for line in lines:
        found = _VERSION.search(line)
        if found:
            protocol = RpcVersion.parse(found.group(1))
            devices = []  # a restarted server's banner replaces the last one
            continue
        device = _DEVICE.match(line)
        if device and protocol is not None:
            devices.append(RpcDevice(device.group(1), device.group(2), int(device.group(3)), int(device.group(4))))
    return RpcBanner(protocol, tuple(devices))


_cache: dict[tuple, object] = {}


def _remembered(binary: Path, what: str, compute):
    try:
        st = os.stat(binary)
    except OSError:
        return None
    key = (str(binary), st.st_size, st.st_mtime_ns, what)
    if key not in _cache:
        _cache[key] = compute()
    return _cache[key]


def _run(command: list[str]) -> str | None:
    try:
        out = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                             timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL, env=without_secrets(),
                             start_new_session=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("could not run %s: %s", command[0], exc)
        return None
    return out.stdout


def llama_build(bin_dir: Path | None) -> str | None:
    """"0.5.0-dev (build 1, commit 0c1e570)" from `llama-server --version` in bin_dir, or None when it
    is missing or says nothing. Blocking (tens of ms, once per binary): call it off the event loop."""
    if bin_dir is None:
        return None
    binary = Path(bin_dir) / "llama-server"

    def ask() -> str | None:
        text = _run([str(binary), "--version"]) or ""
        found = _BUILD.search(text)
        return found.group(1).strip() if found else None

    return _remembered(binary, "build", ask)


def rpc_banner(bin_dir: Path | None) -> RpcBanner:
    """The banner of the ggml-rpc-server in bin_dir, printed without binding (see the module
    docstring); an empty RpcBanner when it is missing. Blocking: call it off the event loop."""
    if bin_dir is None:
        return RpcBanner()
    binary = Path(bin_dir) / "ggml-rpc-server"
    banner = _remembered(binary, "banner",
                         lambda: parse_banner((_run([str(binary), "-H", NOT_AN_ADDRESS, "-p", "1"]) or "").splitlines()))
    return banner or RpcBanner()


def list_rpc_devices(bin_dir: Path | None, rpc: str) -> list[RpcDevice]:
    """The RPC devices `llama-server --rpc rpc --list-devices` lists (name RPCn, the endpoint as its
    description, total and free MiB now), in --rpc order. It opens two connections to each backend,
    so call it only while no llama-server of ours holds them. Blocking: call it off the event loop."""
    if bin_dir is None:
        return []
    text = _run([str(Path(bin_dir) / "llama-server"), "--rpc", rpc, "--list-devices"]) or ""
    found = (_LISTED.match(line) for line in text.splitlines())
    return [RpcDevice(m.group(1), m.group(2), int(m.group(3)), int(m.group(4))) for m in found if m]

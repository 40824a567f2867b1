"""The agent's role in a llama.cpp RPC cluster (seed 003's APP_* variables), read and checked.

Seed 003 runs one image in three modes: `APP_MODE=backend` (a `ggml-rpc-server` that lends its
device to a llama-server elsewhere), `server` (`llama-server --rpc host:port,…` over those
backends) and `none` (nothing). Its names are kept; what changed since (RPC.md §0, §8):

- APP_MODE unset means podtui's own single-pod engine (the seed defaulted to `backend`).
- APP_BIND defaults to 127.0.0.1 (the seed: 0.0.0.0). ggml-rpc-server has no authentication and
  anyone who reaches its port can run code in it (RPC.md §1.3), so only loopback (backends are
  reached through podtui's SSH links) or this Instant Cluster node's overlay address (NODE_ADDR,
  set by Runpod on cluster members, RPC.md §5.2) is accepted; 0.0.0.0 and any other address are
  refused. It must be a numeric IPv4 address: ggml-rpc-server takes nothing else (RPC.md §1.1).
- APP_MEM (MiB) no longer becomes `--mem`, which ggml-rpc-server dropped (it exits 0 on it, RPC.md
  fact 2): it is the backend's memory budget for the context fit.
- APP_RPC_BACKENDS is required in server mode; the seed's entrypoint overwrote it with its default
  (fact 20). Names resolve; IPv6 does not work (llama-server splits at the first colon).
- Where podtui's own names are also set they win: PORT over APP_PORT (server), MODEL over
  APP_MODEL, GPU_LAYERS over APP_GPU_LAYERS; the difference is logged by the daemon.
- The server's port: PORT, else APP_PORT, else 5002 (podtui's tunnel and the image's engine port),
  not the seed's 8080. The backend's: APP_PORT, else 50052.

Added for Runpod Instant Clusters, whose members all get one env (CreateClusterRequest has one `env`)
plus NODE_RANK (0 = the primary), NODE_ADDR (this node's overlay IPv4), NUM_NODES and PRIMARY_ADDR
(RPC.md §5.2):
- APP_MODE=rank: the role follows NODE_RANK, rank 0 the server and every other rank a backend. A
  server with APP_RPC_BACKENDS unset gets 127.0.0.1:60151,… with NUM_NODES-1 entries (where podtui's
  links listen); APP_BIND does not apply to it (llama-server stays on 127.0.0.1).
- APP_BIND=NODE_ADDR (the literal word) means this node's NODE_ADDR, so one env can say "bind the
  overlay" for every backend.
- APP_MEM=20000,20000: one MiB budget per device of a backend that lends several, in the order of
  ARGS `-d CUDA0,CUDA1`, else in ggml-rpc-server's own order (all GPUs: CUDA0, CUDA1, …). One number
  with several devices is refused: it could mean per device or in total, a 2x error either way. Where
  -d is not given the device count is known only once ggml-rpc-server runs, so podtui checks it when
  it links (services/cluster.backend_budgets).

Standard library only: boot checks the same variables in its dry runs.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field

ENGINE, BACKEND, SERVER, NONE = "engine", "backend", "server", "none"
RANK = "rank"  # APP_MODE=rank: the role follows Runpod's NODE_RANK (0 = server)
APP_MODES = (SERVER, BACKEND, NONE, RANK)
FIRST_LINK_PORT = 60151  # a rank-mode server's first link port (podtui's --first-link-port default)
NODE_ADDR_WORD = "NODE_ADDR"  # APP_BIND=NODE_ADDR: this Instant Cluster node's overlay address
DEFAULT_BACKEND_PORT = 50052
DEFAULT_SERVER_GPU_LAYERS = 99  # seed 003's APP_GPU_LAYERS: every layer on the RPC devices
MAX_BACKENDS = 15  # llama.cpp takes at most 16 devices (-ts has 15 values, RPC.md §2.1)
LOOPBACK = "127.0.0.1"


class RoleError(ValueError):
    """A seed 003 variable with a value the agent cannot run; the message names it and the fix."""


@dataclass(frozen=True)
class Endpoint:
    """One backend as llama-server's --rpc names it: host (name or IPv4) and port."""
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ClusterSettings:
    """The role and its settings. role: engine (no cluster), backend, server or none.
    backend: bind (IPv4), port, memory_budget_mib (APP_MEM; None: unset).
    memory_budgets_mib: one budget per device in ARGS -d order when APP_MEM lists several
    (memory_budget_mib is then their sum); () otherwise.
    server: backends (in --rpc order), model (MODEL/APP_MODEL), gpu_layers, repeat_penalty.
    rank, num_nodes: NODE_RANK and NUM_NODES in APP_MODE=rank (None otherwise).
    notes: sentences the daemon logs at start (which variable won, what APP_MEM means now)."""
    role: str = ENGINE
    bind: str = LOOPBACK
    port: int | None = None
    memory_budget_mib: int | None = None
    memory_budgets_mib: tuple[int, ...] = ()
    backends: tuple[Endpoint, ...] = ()
    model: str | None = None
    gpu_layers: int | None = None
    repeat_penalty: float | None = None
    rank: int | None = None
    num_nodes: int | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def rpc_list(self) -> str:
        """The value of llama-server's --rpc: "host:port,host:port"."""
        return ",".join(str(b) for b in self.backends)


def _get(env: dict[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _int(env: dict[str, str], name: str, low: int, high: int) -> int | None:
    raw = _get(env, name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise RoleError(f"{name}={raw!r} is not an integer; set a number from {low} to {high} or unset it") from None
    if not low <= value <= high:
        raise RoleError(f"{name}={value} is out of range; set a number from {low} to {high}")
    return value


def check_bind(address: str, node_addr: str | None) -> str:
    """address when ggml-rpc-server may listen there: a numeric IPv4 that is loopback or this Instant
    Cluster node's overlay address (node_addr, Runpod's NODE_ADDR) when that is a private address (an
    environment variable anyone can set must not open a public port). Raises RoleError saying why not."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise RoleError(f"APP_BIND={address!r} is not a numeric IPv4 address, the only form ggml-rpc-server takes; "
                        f"use {LOOPBACK}, or NODE_ADDR on a Runpod Instant Cluster") from None
    if ip.is_loopback:
        return address
    why = ("ggml-rpc-server has no authentication: anyone who reaches its port can run code in it (llama.cpp's "
           "own README: never run it on an open network)")
    if node_addr and address == node_addr.strip() and ip.is_private and not ip.is_unspecified:
        return address   # Runpod's overlay is private (10.65.0.0/16, RPC.md §5.1); NODE_ADDR is only a variable
    if node_addr and address == node_addr.strip():
        raise RoleError(f"APP_BIND={address} (NODE_ADDR) is refused: an Instant Cluster's overlay address is "
                        f"private (e.g. 10.65.0.2), this one is {'every interface' if ip.is_unspecified else 'public'}, "
                        f"and {why}. Keep the default {LOOPBACK} (podtui links backends over verified SSH)")
    if ip.is_unspecified:
        raise RoleError(f"APP_BIND={address} is refused: it listens on every interface, and {why}. Keep the "
                        f"default {LOOPBACK} (podtui links backends over verified SSH), or on a Runpod Instant "
                        "Cluster bind this node's overlay address (NODE_ADDR)")
    raise RoleError(f"APP_BIND={address} is refused: it is neither loopback nor this Instant Cluster node's overlay "
                    f"address (NODE_ADDR={node_addr or 'unset'}), and {why}. Use {LOOPBACK} or NODE_ADDR")


def parse_backends(text: str) -> tuple[Endpoint, ...]:
    """"host:port,host:port" → Endpoints, in order. Raises RoleError naming the bad entry."""
    endpoints: list[Endpoint] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        host, sep, port_text = item.rpartition(":")
        if not sep or not host or ":" in host or "[" in host:
            raise RoleError(f"APP_RPC_BACKENDS entry {item!r} is not host:port (IPv4 or a name; llama-server "
                            "cannot take IPv6 here); write e.g. APP_RPC_BACKENDS=10.65.0.2:50052,10.65.0.3:50052")
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise RoleError(f"APP_RPC_BACKENDS entry {item!r} has no valid port (1-65535)")
        endpoint = Endpoint(host, int(port_text))
        if endpoint in endpoints:
            raise RoleError(f"APP_RPC_BACKENDS names {item} twice; list each backend once")
        endpoints.append(endpoint)
    if not endpoints:
        raise RoleError("APP_MODE=server needs APP_RPC_BACKENDS=host:port,host:port: the backends' "
                        "ggml-rpc-server addresses (each pod with APP_MODE=backend)")
    if len(endpoints) > MAX_BACKENDS:
        raise RoleError(f"APP_RPC_BACKENDS lists {len(endpoints)} backends; llama.cpp takes at most {MAX_BACKENDS}")
    return tuple(endpoints)


def _penalty(env: dict[str, str]) -> float | None:
    raw = _get(env, "APP_REPEAT_PENALTY")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 10.0:
        raise RoleError(f"APP_REPEAT_PENALTY={raw!r} must be a number above 0 (1.0: no penalty), as llama-server's "
                        "--repeat-penalty takes it")
    return value


def _prefer(env: dict[str, str], ours: str, seed: str, notes: list[str]) -> str | None:
    mine, theirs = _get(env, ours), _get(env, seed)
    if mine and theirs and mine != theirs:
        notes.append(f"{ours}={mine} and {seed}={theirs} are both set; {ours} wins")
    return mine or theirs or None


def _devices(env: dict[str, str]) -> list[str]:
    """The devices ARGS names with -d/--device (ggml-rpc-server's comma or slash list), else []."""
    try:
        words = shlex.split(_get(env, "ARGS"))
    except ValueError:
        return []  # server/settings.py refuses unparsable ARGS with its own message
    for index, word in enumerate(words):
        value = None
        if word in ("-d", "--device") and index + 1 < len(words):
            value = words[index + 1]
        elif word.startswith("--device="):
            value = word.partition("=")[2]
        if value is not None:
            return [d for d in value.replace("/", ",").split(",") if d.strip()]
    return []


def memory_budgets(env: dict[str, str]) -> tuple[int, ...]:
    """APP_MEM as MiB per device: "2048" → (2048,), "20000,20000" → one per device (ARGS -d order when
    given, and then as many). () when unset. Raises RoleError naming the value and the fix."""
    raw = _get(env, "APP_MEM")
    if not raw:
        return ()
    values = []
    for item in raw.split(","):
        try:
            value = int(item.strip())
        except ValueError:
            raise RoleError(f"APP_MEM={raw!r} is not an integer; set MiB (e.g. APP_MEM=20000), one per device "
                            "for several (APP_MEM=20000,20000), or unset it") from None
        if not 1 <= value <= 1 << 30:
            raise RoleError(f"APP_MEM={raw} is out of range; set MiB from 1 to {1 << 30} per device")
        values.append(value)
    devices = _devices(env)
    if len(values) > 1 and devices and len(values) != len(devices):
        raise RoleError(f"APP_MEM={raw} gives {len(values)} budgets but ARGS -d names {len(devices)} devices "
                        f"({','.join(devices)}); give one budget per device, in -d order")
    if len(values) == 1 and len(devices) > 1:
        raise RoleError(f"APP_MEM={raw} is one budget but ARGS -d lends {len(devices)} devices "
                        f"({','.join(devices)}): it could mean per device or in total; give one per device in -d "
                        f"order, e.g. APP_MEM={','.join([raw] * len(devices))}")
    return tuple(values)


def _rank(env: dict[str, str]) -> tuple[int, int]:
    """(NODE_RANK, NUM_NODES) for APP_MODE=rank; raises RoleError naming the variable and the fix."""
    fix = ("Runpod sets it on every Instant Cluster member; elsewhere set NODE_RANK (0 = the server) and "
           "NUM_NODES, or use APP_MODE=server/backend")
    values = []
    for name, low in (("NUM_NODES", 2), ("NODE_RANK", 0)):
        raw = _get(env, name)
        if not raw:
            raise RoleError(f"APP_MODE=rank needs {name}, which is unset: {fix}")
        high = MAX_BACKENDS + 1 if name == "NUM_NODES" else MAX_BACKENDS
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise RoleError(f"{name}={raw!r} is not a number from {low} to {high} (llama.cpp takes at most "
                            f"{MAX_BACKENDS} backends); {fix}")
        values.append(int(raw))
    nodes, rank = values
    if nodes > MAX_BACKENDS + 1:
        raise RoleError(f"NUM_NODES={nodes}: llama.cpp takes at most {MAX_BACKENDS} backends, so at most "
                        f"{MAX_BACKENDS + 1} nodes")
    if rank >= nodes:
        raise RoleError(f"NODE_RANK={rank} is not below NUM_NODES={nodes}; {fix}")
    return rank, nodes


def _bind(env: dict[str, str]) -> str:
    """APP_BIND with the word NODE_ADDR replaced by this node's NODE_ADDR, checked by check_bind."""
    raw = _get(env, "APP_BIND") or LOOPBACK
    node_addr = _get(env, "NODE_ADDR") or None
    if raw == NODE_ADDR_WORD:
        if not node_addr:
            raise RoleError("APP_BIND=NODE_ADDR means this Instant Cluster node's overlay address, but NODE_ADDR "
                            f"is unset (Runpod sets it on cluster members only); use {LOOPBACK} elsewhere")
        raw = node_addr
    return check_bind(raw, node_addr)


def cluster_from_env(env: dict[str, str]) -> ClusterSettings:
    """The role and settings the environment asks for (see the module docstring). Raises RoleError
    naming the variable and the fix."""
    mode = _get(env, "APP_MODE").lower()
    if not mode:
        return ClusterSettings()
    if mode not in APP_MODES:
        raise RoleError(f"APP_MODE={mode!r} is not a mode; use server, backend, none or rank (Instant Clusters), "
                        "or unset it for podtui's single-pod engine")
    notes: list[str] = []
    if mode == NONE:
        return ClusterSettings(role=NONE)
    rank = nodes = None
    if mode == RANK:
        rank, nodes = _rank(env)
        mode = SERVER if rank == 0 else BACKEND
        notes.append(f"APP_MODE=rank: NODE_RANK={rank} of NUM_NODES={nodes}, so this pod is the "
                     f"{'server (rank 0)' if rank == 0 else 'backend'}")
    app_port = _int(env, "APP_PORT", 1, 65535)
    if mode == BACKEND:
        bind = _bind(env)
        budgets = memory_budgets(env)
        mem = sum(budgets) if budgets else None
        if mem is not None:
            notes.append(f"APP_MEM={_get(env, 'APP_MEM')} MiB is this backend's memory budget for the context fit; "
                         "ggml-rpc-server no longer takes --mem (it reports its device's real free memory)")
        return ClusterSettings(role=BACKEND, bind=bind, port=app_port or DEFAULT_BACKEND_PORT, memory_budget_mib=mem,
                               memory_budgets_mib=budgets if len(budgets) > 1 else (), rank=rank, num_nodes=nodes,
                               notes=tuple(notes))
    bind = _get(env, "APP_BIND")
    if bind and bind != LOOPBACK and rank is None:
        raise RoleError(f"APP_BIND={bind} is refused in server mode: llama-server listens on {LOOPBACK} and is "
                        "reached through podtui's SSH tunnel; unset APP_BIND")
    port = _int(env, "PORT", 1, 65535)
    if port and app_port and port != app_port:
        notes.append(f"PORT={port} and APP_PORT={app_port} are both set; PORT wins")
    gpu_layers = _prefer(env, "GPU_LAYERS", "APP_GPU_LAYERS", notes)
    try:
        layers = int(gpu_layers) if gpu_layers is not None else DEFAULT_SERVER_GPU_LAYERS
    except ValueError:
        raise RoleError(f"APP_GPU_LAYERS={gpu_layers!r} is not an integer; set a number of layers (99: all)") from None
    if layers < 0:
        raise RoleError(f"APP_GPU_LAYERS={layers} must be at least 0")
    listed = _get(env, "APP_RPC_BACKENDS")
    if rank is not None and not listed:
        listed = ",".join(f"{LOOPBACK}:{FIRST_LINK_PORT + i}" for i in range(nodes - 1))
        notes.append(f"APP_RPC_BACKENDS unset in rank mode: {listed} (where podtui's links listen)")
    return ClusterSettings(role=SERVER, port=port or (None if rank is not None else app_port),
                           backends=parse_backends(listed), model=_prefer(env, "MODEL", "APP_MODEL", notes),
                           gpu_layers=layers, repeat_penalty=_penalty(env), rank=rank, num_nodes=nodes,
                           notes=tuple(notes))


def describe_role(settings: ClusterSettings) -> str:
    """One sentence naming the role and what it runs (boot's dry run, the daemon's log); "" for no cluster."""
    s = settings
    if s.role == ENGINE:
        return ""
    head = (f"APP_MODE=rank: NODE_RANK={s.rank} of NUM_NODES={s.num_nodes}, so this pod is the {s.role}"
            if s.rank is not None else f"APP_MODE={s.role}")
    if s.role == BACKEND:
        return f"{head}: ggml-rpc-server on {s.bind}:{s.port}"
    if s.role == SERVER:
        return f"{head}: llama-server --rpc {s.rpc_list}"
    return f"{head}: no engine, sshd and the agent only"

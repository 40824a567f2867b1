"""The largest context that fits every device of an RPC cluster (RPC.md §3; seed 003's APP_MEM).

llama.cpp places layers on RPC devices in proportion to their free memory, or to `-ts`. Its own fit
handles RPC devices, but it is skipped once `-ngl` or `-ts` is set (the server role sets
`-ngl 99`). Its printed result also drops a trailing zero of the split (`9,0` prints as `-ngl 9`),
and under pressure it falls back to `-ngl 0`, everything on the server's CPU (facts 14–15). So the
agent pins the placement itself and asks only for figures:

1. The split is the devices' budgets (`-ts B0,B1,…` in MiB, in --rpc order), always passed
   explicitly, trailing zeros and all. The layers are never left to fall back to the host CPU.
2. `llama-fit-params -fitp on -ngl N -ts … -c c` prints, per device, the model, context and compute
   MiB without allocating anything (about 0.1 s; it connects to every backend, so the backends
   must be idle). This is done at two contexts. Each device's use is linear in the context,
   U_d(c) = a_d + b_d·c, and the context each device allows is (budget_d − a_d) / b_d.
3. The answer is the smallest of those, the cap and the trained context, rounded down to 256. It
   is checked with one more run at that context, stepping down while a device is over budget
   (the figures are whole MiB).
4. The answer is cached per (model file, endpoints, budgets, settings) in the state dir.

The host's own row is not budgeted: llama.cpp's fit assumes system memory is unlimited, and the
input embeddings always stay on the host (RPC.md §2.2). A backend that lends several devices
shows as several RPCn rows; budgets are then needed per device, in that order.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from remote_agent.child_env import without_secrets
from remote_agent.fit.cache import FitCache, model_identity
from remote_agent.fit.estimate import FitParamsError, _last_error_line, parse_fitp_output

CACHE_FILE = "rpc-fit-cache.json"
LOW, HIGH = 1024, 32768  # the two contexts the figures are taken at (tokens)
STEP = 256
RUN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DeviceNeed:
    """One RPC device at the chosen context: its name (RPCn), the backend it is on, its budget, what
    it needs (model + context + compute, MiB) and how much more per 1,000 tokens of context."""
    name: str
    endpoint: str
    budget_mib: int
    need_mib: int
    mib_per_1k_tokens: float


@dataclass(frozen=True)
class DeviceFit:
    """The answer. status "fits" (ctx set) or "nothing_fits" (ctx None); tensor_split: the -ts
    values; limited_by: the device whose budget set ctx, or "ctx_cap" / "trained_context"."""
    status: str
    ctx: int | None
    tensor_split: tuple[int, ...]
    devices: tuple[DeviceNeed, ...]
    limited_by: str
    message: str
    from_cache: bool = False

    def to_dict(self) -> dict:
        """JSON-ready: fit.search's answer in the server role."""
        data = asdict(self)
        data["tensor_split"] = list(self.tensor_split)
        data["devices"] = [asdict(d) for d in self.devices]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "DeviceFit":
        """The inverse of to_dict."""
        return cls(data["status"], data["ctx"], tuple(data["tensor_split"]),
                   tuple(DeviceNeed(**d) for d in data["devices"]), data["limited_by"], data["message"],
                   data.get("from_cache", False))


def measure(binary: Path, model: Path, rpc: str, ctx: int, settings: tuple[str, ...]) -> dict[str, int]:
    """{device: total MiB} that llama-fit-params prints for -c ctx with settings (-ngl, -ts, …);
    the RPCn rows only. Raises FitParamsError with its last error line."""
    command = [str(binary), "-m", str(model), "--rpc", rpc, "-c", str(ctx), "-fitp", "on", *settings]
    try:
        run = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                             timeout=RUN_TIMEOUT_S, env=without_secrets(), start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FitParamsError(f"llama-fit-params could not run: {exc}") from None
    rows = parse_fitp_output(run.stdout)
    if run.returncode != 0 or not rows:
        raise FitParamsError(f"llama-fit-params failed at ctx {ctx}: {_last_error_line(run.stderr)}")
    return {name: sum(values) for name, values in rows.items() if name.startswith("RPC")}


def fit_devices(binary: Path, model: Path, endpoints: list[str], budgets_mib: list[int], *, gpu_layers: int,
                ctx_cap: int | None, trained_ctx: int | None, settings: tuple[str, ...] = (),
                state_dir: Path | None = None, fresh: bool = False) -> DeviceFit:
    """The largest context (multiple of 256) at which every RPC device's need stays within its
    budget (MiB, one per device in --rpc order), with -ngl gpu_layers and -ts = the budgets, capped
    by ctx_cap and trained_ctx. settings: further memory flags (-np, -ub, cache types). Cached in
    state_dir unless fresh. Raises FitParamsError (the figures could not be had) and ValueError
    (budgets that do not match the devices)."""
    if not budgets_mib or any(b <= 0 for b in budgets_mib):
        raise ValueError("every device needs a positive budget in MiB")
    rpc = ",".join(endpoints)
    pinned = ("-ngl", str(gpu_layers), "-ts", ",".join(str(b) for b in budgets_mib), *settings)
    cache = FitCache(state_dir) if state_dir is not None else None
    if cache is not None:
        cache.path = Path(state_dir) / CACHE_FILE
        key = hashlib.sha256(json.dumps([model_identity(model), rpc, pinned, ctx_cap, trained_ctx]).encode()
                             ).hexdigest()[:32]
        if not fresh and (record := cache.get(key)) is not None:
            return DeviceFit.from_dict({**record, "from_cache": True})
    low, high = measure(binary, model, rpc, LOW, pinned), measure(binary, model, rpc, HIGH, pinned)
    names = sorted(low, key=lambda name: int(name[3:]))
    if len(names) != len(budgets_mib):
        raise ValueError(f"the backends lend {len(names)} devices ({', '.join(names)}) but {len(budgets_mib)} "
                         "budgets were given; give one budget per device, in --rpc order")
    owners = dict(zip(names, endpoints if len(endpoints) == len(names) else names))
    slope = {n: max(0.0, (high[n] - low[n]) / (HIGH - LOW)) for n in names}
    base = {n: low[n] - slope[n] * LOW for n in names}
    allowed = {n: (b - base[n]) / slope[n] if slope[n] else (float("inf") if base[n] <= b else -1.0)
               for n, b in zip(names, budgets_mib)}
    limits = {**allowed, "ctx_cap": ctx_cap or float("inf"), "trained_context": trained_ctx or float("inf")}
    limited_by = min(limits, key=limits.get)
    ctx = int(min(limits.values(), default=0) // STEP * STEP) if limits[limited_by] != float("inf") else HIGH
    need: dict[str, int] = {}
    for _ in range(8):  # the figures are whole MiB: step down by what a device is over, at least 256
        if ctx < STEP:
            break
        need = measure(binary, model, rpc, ctx, pinned)
        over = [(need.get(n, 0) - b) / slope[n] if slope[n] else float("inf")
                for n, b in zip(names, budgets_mib) if need.get(n, 0) > b]
        if not over:
            break
        ctx = -1 if max(over) == float("inf") else int(ctx - max(STEP, max(over))) // STEP * STEP
    else:
        ctx = -1
    at = ctx if ctx >= STEP else STEP
    if ctx < STEP:  # what each device would need at the smallest context
        need = {n: round(base[n] + slope[n] * STEP) for n in names}
    devices = tuple(DeviceNeed(n, owners[n], b, need.get(n, round(base[n] + slope[n] * at)),
                               round(slope[n] * 1000, 3)) for n, b in zip(names, budgets_mib))
    if ctx < STEP:
        short = [f"{d.name} ({d.endpoint}) needs {d.need_mib} MiB at {STEP} tokens, budget {d.budget_mib}"
                 for d in devices if d.need_mib > d.budget_mib] or [f"{limited_by} is the tightest"]
        result = DeviceFit("nothing_fits", None, tuple(budgets_mib), devices, limited_by,
                           "not even 256 tokens of context fit every device: " + "; ".join(short)
                           + ". Raise that backend's budget (APP_MEM), add a backend, or pick a smaller quant")
    else:
        result = DeviceFit("fits", ctx, tuple(budgets_mib), devices, limited_by,
                           f"ctx {ctx} fits every device (limited by {limited_by}); -ts "
                           + ",".join(map(str, budgets_mib)))
    if cache is not None:
        cache.put(key, {k: v for k, v in result.to_dict().items() if k != "from_cache"})
    return result

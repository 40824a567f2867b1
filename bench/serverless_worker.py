"""Serverless worker benchmark, one run, side by side with the engine direct.

    .venv/bin/python bench/serverless_worker.py [--tokens 256] [--model tiny|mid|both] [--slots 4] [--no-split]

The real runpod SDK worker (remote-agent serverless-worker, unmodified SDK loop) in front of the test
bed's CPU llama-server, driven through the loopback platform double (tests/testbed/runpod_platform.py).

1. Streamed token gaps: one streamed /v1/completions (ignore_eos, `--tokens` tokens), read by a client
   straight from the engine, against the same request as a Runpod OpenAI job, timed where the worker
   delivers it (each job-stream POST's arrival at the double; the events in one POST count as arriving
   together). Gaps are between consecutive SSE events, in ms: mean (= throughput) and p50 / p90.
2. Concurrency: `--slots` jobs queued at one instant on a worker taking that many at once (llama-server
   `--parallel N`), against the same jobs one after another; the engine's own speed-up (the same
   requests sent straight to it, concurrently vs one by one) is the reference.

By default the engine runs on one thread pinned to CPU 0 and everything else (this process with the
double and the client, the worker) on the other CPUs: a GPU engine leaves the CPU to the worker, and
on a 2-core machine an unpinned worker would slow the engine it is measured against.

Models: `tiny` (the test bed's: a token every ~0.6 ms, faster than any GPU serves a real model, so it
shows the worker's own per-chunk cost) and `mid` (a random 8-layer 512-wide model written once into
the test-bed cache, ~250 MB, a token every few ms on 2 CPU threads: closer to a GPU's pace).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests.testbed import cache, models  # noqa: E402
from tests.testbed.llama import LlamaServer  # noqa: E402
from tests.testbed.runpod_platform import PlatformDouble  # noqa: E402
from tests.testbed.sdk_worker import start_sdk_worker  # noqa: E402

KEY = "bench-engine-key"
MID = models.TinyModelSpec("bench-mid", seed=21, n_embd=512, n_layer=8, n_head=8, n_head_kv=8, n_ff=1536)


def model_path(name: str) -> Path:
    if name == "tiny":
        return models.ensure_model(models.TINY_A)
    return models.ensure_model(MID, cache.cache_root() / "bench-models")


def gaps_ms(times: list[float]) -> list[float]:
    return [(b - a) * 1000 for a, b in zip(times, times[1:])]


def summary(gaps: list[float]) -> dict:
    ordered = sorted(gaps)
    return {"n": len(gaps) + 1, "mean": statistics.fmean(gaps), "p50": ordered[len(ordered) // 2],
            "p90": ordered[int(len(ordered) * 0.9)]}


def completion(tokens: int, stream: bool) -> dict:
    return {"prompt": "Once upon a time", "max_tokens": tokens, "ignore_eos": True, "temperature": 0,
            "stream": stream}


def direct_stream_times(engine: LlamaServer, tokens: int) -> list[float]:
    times = []
    with httpx.stream("POST", f"{engine.base_url}/v1/completions", json=completion(tokens, True),
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data:") and "[DONE]" not in line:
                times.append(time.perf_counter())
    return times


def worker_stream_times(platform: PlatformDouble, tokens: int) -> list[float]:
    job = platform.wait_for(platform.submit({"openai_route": "/v1/completions",
                                             "openai_input": completion(tokens, True)}), timeout_s=300)
    assert job["status"] == "COMPLETED", job
    # stream_times are monotonic; only differences matter. One POST may carry several events.
    times = []
    for arrived, chunk in zip(job["stream_times"], job["stream"]):
        events = [line for line in chunk.splitlines() if line.startswith("data:") and "[DONE]" not in line]
        times += [arrived] * len(events)
    return times


def direct_batch(engine: LlamaServer, n: int, tokens: int, concurrent: bool) -> float:
    def one() -> None:
        httpx.post(f"{engine.base_url}/v1/completions", json=completion(tokens, False),
                   headers={"Authorization": f"Bearer {KEY}"}, timeout=300).raise_for_status()

    start = time.perf_counter()
    if concurrent:
        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for _ in range(n):
            one()
    return time.perf_counter() - start


def worker_batch(platform: PlatformDouble, n: int, tokens: int, concurrent: bool) -> float:
    job = {"openai_route": "/v1/completions", "openai_input": completion(tokens, False)}
    wait_asking(platform, n)
    start = time.perf_counter()
    if concurrent:
        ids = platform.submit_many([job] * n)
        done = [platform.wait_for(i, timeout_s=600) for i in ids]
    else:
        done = []
        for _ in range(n):
            done.append(platform.wait_for(platform.submit(job), timeout_s=600))
    assert all(j["status"] == "COMPLETED" for j in done), done
    return time.perf_counter() - start


def job_overhead(engine: LlamaServer, platform: PlatformDouble) -> tuple[float, float]:
    """(ms) one 1-token completion straight from the engine, and as a /runsync job."""
    start = time.perf_counter()
    direct_batch(engine, 1, 1, concurrent=False)
    direct = (time.perf_counter() - start) * 1000
    deadline = time.monotonic() + 15
    while not any(w["asking"] for w in platform.workers) and time.monotonic() < deadline:
        time.sleep(0.01)  # a job-take is open: the job is taken the moment it is queued
    start = time.perf_counter()
    with httpx.Client(base_url=platform.runtime_url, headers={"Authorization": f"Bearer {platform.api_key}"}) as c:
        job = c.post("/runsync", json={"input": {"openai_route": "/v1/completions",
                                                 "openai_input": completion(1, False)}}, timeout=60).json()
    assert job["status"] == "COMPLETED", job
    return direct, (time.perf_counter() - start) * 1000


def wait_asking(platform: PlatformDouble, n: int, timeout_s: float = 15.0) -> None:
    """Until the worker's open job-take asks for n (right after a job SDK 1.12 asks for fewer, then
    sleeps 1 s: counted here would be the SDK's intake delay, not the concurrency)."""
    deadline = time.monotonic() + timeout_s
    while not any(w["asking"] == n for w in platform.workers):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker never asked for {n} jobs: {platform.workers}")
        time.sleep(0.01)


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of pid onto cpus (a process's affinity covers only threads it starts later)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def run(model: str, tokens: int, slots: int, threads: int, repeat: int, split: bool) -> None:
    path = model_path(model)
    engine = LlamaServer(cache.llama_bin_dir(), path, ctx=slots * max(1024, tokens + 64),
                         extra_args=("--parallel", str(slots), "--api-key", KEY, "-t", str(threads))).start()
    if split:  # the engine alone on CPU 0; this process, the double, the client and the worker on the rest
        pin(engine.proc.pid, {0})
    try:
        with PlatformDouble() as platform:
            began = time.perf_counter()
            worker = start_sdk_worker(platform.worker_env(), engine.port, api_key=KEY, concurrency=slots)
            try:
                worker.wait_ready(platform, timeout_s=60)
                ready_s = time.perf_counter() - began
                direct_stream_times(engine, 16)  # warm both paths
                worker_stream_times(platform, 16)
                direct = min((summary(gaps_ms(direct_stream_times(engine, tokens))) for _ in range(repeat)),
                             key=lambda s: s["mean"])
                through = min((summary(gaps_ms(worker_stream_times(platform, tokens))) for _ in range(repeat)),
                              key=lambda s: s["mean"])
                print(f"\n== model {model} ({path.name}), {tokens} tokens, {slots} slots, engine on {threads} "
                      f"thread(s){' pinned to CPU 0, the rest elsewhere' if split else ''}, best of {repeat}; worker "
                      f"ready {ready_s:.2f} s after start (runpod import + first job-take)")
                print(f"{'token gaps (ms)':<22}{'direct':>10}{'worker':>10}{'worker-direct':>15}{'ratio':>8}")
                for key in ("mean", "p50", "p90"):
                    d, w = direct[key], through[key]
                    print(f"{key:<22}{d:>10.2f}{w:>10.2f}{w - d:>+15.2f}{w / d if d else float('nan'):>8.2f}")
                print(f"{'events':<22}{direct['n']:>10}{through['n']:>10}")
                seq_d = min(direct_batch(engine, slots, tokens, concurrent=False) for _ in range(repeat))
                par_d = min(direct_batch(engine, slots, tokens, concurrent=True) for _ in range(repeat))
                seq_w = min(worker_batch(platform, slots, tokens, concurrent=False) for _ in range(repeat))
                par_w = min(worker_batch(platform, slots, tokens, concurrent=True) for _ in range(repeat))
                print(f"{f'{slots} jobs (s)':<22}{'direct':>10}{'worker':>10}")
                print(f"{'one after another':<22}{seq_d:>10.2f}{seq_w:>10.2f}")
                print(f"{'all at once':<22}{par_d:>10.2f}{par_w:>10.2f}")
                print(f"{'speed-up':<22}{seq_d / par_d:>9.2f}x{seq_w / par_w:>9.2f}x")
                small = [job_overhead(engine, platform) for _ in range(5)]
                print(f"{'a 1-token job (ms)':<22}{min(d for d, _ in small):>10.1f}{min(w for _, w in small):>10.1f}"
                      "   (direct request vs /runsync through the double and the worker)")
            finally:
                worker.stop()
    finally:
        engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--model", choices=("tiny", "mid", "both"), default="both")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama-server's CPU threads; 1 leaves the other core to the worker, the double and "
                        "the client, as a GPU engine would (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each figure (default: %(default)s)")
    parser.add_argument("--no-split", action="store_true",
                        help="do not pin the engine to CPU 0 and everything else to the other CPUs (by default "
                        "they are split, as a GPU engine leaves the CPU to the worker)")
    args = parser.parse_args()
    split = not args.no_split and len(os.sched_getaffinity(0)) >= 2
    if split:
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {0})  # inherited by the worker and the double
    for model in (("tiny", "mid") if args.model == "both" else (args.model,)):
        run(model, args.tokens, args.slots, args.threads, args.repeat, split)
    print(json.dumps({"note": "one run on a shared 2-core machine; compare ratios, not absolute times"}))


if __name__ == "__main__":
    main()

"""Logs-screen benchmark: how fast the TUI ingests a firehose, whether the UI stays responsive,
and whether memory stays flat — side by side with Textual's own `Log` widget as the reference.

    .venv/bin/python bench/tui_logs.py [--lines 1000000] [--reference-lines 1000000]

Each run is a separate process (so RSS figures do not mix): the real app, headless, 160×48,
with the logs screen open on a follower thread that hands over engine-like lines in reads of 1,024
(as a stream reader does) as fast as it can, or paced at a given rate.
Measured:
  * ingest rate: lines that reached the buffer per second (and lines dropped because the screen
    fell a whole buffer behind — the same "slow follower loses lines" rule as the agent's logs);
  * worst event-loop stall: the longest the loop went without running a 5 ms ticker — an upper
    bound on any frame's time, so "no frame over 100 ms" means this figure is under 100 ms;
  * RSS after 100k lines and after all lines (goal: flat).
Run with `--filter error` to measure with a filter active.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_LINES_PER_S = 20_000
FRAME_BUDGET_MS = 100


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def engine_line(n: int) -> str:
    if n % 97 == 0:
        return f"srv  log_server_r: request: POST /v1/chat/completions 127.0.0.1 500 error {n}"
    return (f"slot update_slots: id  0 | task {n} | prompt processing progress, n_past = {n % 8192},"
            f" n_tokens = 512, progress = 0.{n % 1000:03d}")


class LoopMonitor:
    """Measures the event loop's worst lateness with a 5 ms ticker."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.perf_counter() - before - 0.005)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def stop(self) -> None:
        if self._task:
            self._task.cancel()


def chunks(total: int, rate: int, size: int = 1024):
    """Lists of lines as a stream reader hands them over (one read → many lines); paced at
    `rate` lines/s by sleeping between reads, or as fast as possible when rate is 0."""
    if rate:
        size = max(1, rate // 100)       # a read every 10 ms
    began = time.perf_counter()
    for start in range(0, total, size):
        if rate:
            delay = began + start / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        yield [engine_line(n) for n in range(start, min(start + size, total))]


async def run_podtui(total: int, filter_text: str, rate: int = 0) -> dict:
    from podtui.tui.app import build_app
    from podtui.services.follow import LineFollower
    from podtui.services.front import PodListing, TuiServices

    class NoPods(TuiServices):
        def list_pods(self) -> PodListing:
            return PodListing()

    app = build_app(NoPods(), refresh_seconds=3600)
    marks: dict[str, float] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        start = threading.Event()

        class StreamFollower(LineFollower):
            title = "firehose"

            def follow(self, emit, stop) -> None:
                start.wait()
                for batch in chunks(total, rate):
                    if stop.is_set():
                        return
                    emit(batch)

        app.open_logs(StreamFollower())
        await pilot.pause()
        view = app.screen.log_view
        if filter_text:
            view.set_filter(filter_text)
        marks["rss_start"] = rss_mib()
        monitor = LoopMonitor()
        monitor.start()
        began = time.perf_counter()
        start.set()
        while view.buffer.total + view.dropped < total:
            await asyncio.sleep(0.01)
            if "rss_100k" not in marks and view.buffer.total >= 100_000:
                marks["rss_100k"] = rss_mib()
        elapsed = time.perf_counter() - began
        await pilot.pause(0.1)   # one more frame with everything in
        monitor.stop()
        marks["rss_end"] = rss_mib()
        return {"widget": f"podtui LogView{f' @{rate:,}/s' if rate else ''}", "lines": total, "ingested": view.buffer.total,
                "dropped": view.dropped, "seconds": elapsed,
                "lines_per_s": view.buffer.total / elapsed, "worst_stall_ms": monitor.worst * 1e3,
                "held": len(view.buffer), **marks}


async def run_reference(total: int) -> dict:
    """Textual's `Log` widget fed the same lines (write_lines from the same kind of thread)."""
    from textual.app import App
    from textual.widgets import Log

    class LogApp(App):
        def compose(self):
            yield Log(id="log")

    app = LogApp()
    marks: dict[str, float] = {}
    written = 0
    async with app.run_test(size=(160, 48)) as pilot:
        log = app.query_one(Log)
        done = threading.Event()

        def feed() -> None:
            nonlocal written
            for batch in chunks(total, 0):
                app.call_from_thread(log.write_lines, batch)
                written += len(batch)
            done.set()

        marks["rss_start"] = rss_mib()
        monitor = LoopMonitor()
        monitor.start()
        began = time.perf_counter()
        threading.Thread(target=feed, daemon=True).start()
        while not done.is_set():
            await asyncio.sleep(0.01)
            if "rss_100k" not in marks and written >= 100_000:
                marks["rss_100k"] = rss_mib()
        elapsed = time.perf_counter() - began
        await pilot.pause(0.1)
        monitor.stop()
        marks["rss_end"] = rss_mib()
        return {"widget": "textual Log (reference)", "lines": total, "ingested": log.line_count,
                "dropped": 0, "seconds": elapsed, "lines_per_s": log.line_count / elapsed,
                "worst_stall_ms": monitor.worst * 1e3, "held": log.line_count, **marks}


def child(kind: str, total: int, filter_text: str, rate: int) -> None:
    result = asyncio.run(run_reference(total) if kind == "reference"
                         else run_podtui(total, filter_text, rate))
    print(json.dumps(result))


def run_child(kind: str, total: int, filter_text: str, rate: int = 0) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--lines", str(total),
                          "--filter", filter_text, "--rate", str(rate)],
                         check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_runs(runs: list[dict]) -> None:
    print(f"{'widget':<30}{'lines/s':>11}{'dropped':>10}{'worst stall':>13}"
          f"{'RSS@100k':>11}{'RSS@end':>10}{'lines held':>12}")
    for run in runs:
        print(f"{run['widget']:<30}{run['lines_per_s']:>11,.0f}{run['dropped']:>10,}"
              f"{run['worst_stall_ms']:>10.1f} ms{run.get('rss_100k', float('nan')):>8.0f} MiB"
              f"{run['rss_end']:>6.0f} MiB{run['held']:>12,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--reference-lines", type=int, default=1_000_000)
    parser.add_argument("--filter", default="")
    parser.add_argument("--rate", type=int, default=0, help="pace the follower (lines/s)")
    parser.add_argument("--paced-rates", default="20000,100000",
                        help="also run a paced follower at these rates with filter 'error'")
    parser.add_argument("--child", choices=["podtui", "reference"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.lines, args.filter, args.rate)
        return
    runs = [run_child("podtui", args.lines, args.filter)]
    if args.reference_lines:
        runs.append(run_child("reference", args.reference_lines, ""))
    print(f"logs screen, 160x48 headless, {args.lines:,} engine-like lines"
          + (f", filter {args.filter!r}" if args.filter else ""))
    print_runs(runs)
    ours = runs[0]
    growth = ours["rss_end"] - ours.get("rss_100k", ours["rss_end"])
    print(f"podtui: {ours['lines_per_s']:,.0f} lines/s (goal ≥ {GOAL_LINES_PER_S:,}: "
          f"{'met' if ours['lines_per_s'] >= GOAL_LINES_PER_S else 'MISSED'}); worst stall "
          f"{ours['worst_stall_ms']:.0f} ms (budget {FRAME_BUDGET_MS} ms: "
          f"{'met' if ours['worst_stall_ms'] <= FRAME_BUDGET_MS else 'MISSED'}); RSS grew "
          f"{growth:+.0f} MiB from 100k to {ours['lines']:,} lines")
    if len(runs) > 1:
        ref = runs[1]
        ref_growth = ref["rss_end"] - ref.get("rss_100k", ref["rss_end"])
        print(f"ratios podtui/reference: speed {ours['lines_per_s'] / ref['lines_per_s']:.2f}x, "
              f"worst stall {ours['worst_stall_ms'] / max(ref['worst_stall_ms'], 1e-3):.2f}x, "
              f"RSS growth {growth:+.0f} vs {ref_growth:+.0f} MiB")
    rates = [int(rate) for rate in args.paced_rates.split(",") if rate]
    if rates:
        paced_section(rates)




def paced_section(rates: list[int]) -> None:
    runs = [run_child("podtui", rate * 3, "error", rate) for rate in rates]
    print(f"\npaced follower, 3 s at each rate, filter 'error' active")
    print_runs(runs)
    for run in runs:
        verdict = "met" if run["worst_stall_ms"] <= FRAME_BUDGET_MS and not run["dropped"] \
            else "MISSED"
        print(f"{run['widget']}: worst stall {run['worst_stall_ms']:.0f} ms, "
              f"{run['dropped']:,} dropped — {verdict}")


if __name__ == "__main__":
    main()

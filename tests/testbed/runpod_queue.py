"""The state behind the Runpod Serverless DOUBLE (runpod_platform.py): one endpoint's jobs and workers.

No HTTP here: PlatformState holds the jobs (IN_QUEUE → IN_PROGRESS → COMPLETED | FAILED | CANCELLED |
TIMED_OUT, SERVERLESS.md §3.2) and the workers, under one lock whose Condition wakes every
long-poll and stream reader when anything changes. Times are time.monotonic() seconds; the views
the runtime API returns give delayTime / executionTime in milliseconds as Runpod does (§3.2).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


@dataclass
class Job:
    id: str
    input: Any
    submitted: float
    execution_timeout_s: float
    status: str = "IN_QUEUE"
    worker_id: str | None = None
    taken: float | None = None
    done: float | None = None
    output: Any = None
    error: Any = None
    chunks: list[tuple[float, Any]] = field(default_factory=list)  # job-stream outputs, (arrival, output)
    drained: int = 0  # how many chunks /stream has handed out
    done_posts: int = 0  # job-done POSTs received (a stopped job gets none, §1.4)
    progress: Any = None

    def view(self) -> dict:
        """What GET /status answers: id, status, delayTime and executionTime (ms, once known), output
        and error when set, and the worker that ran it (workerId: the double's addition)."""
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.taken is not None:
            out["delayTime"] = round((self.taken - self.submitted) * 1000)
        if self.taken is not None and self.done is not None:
            out["executionTime"] = round((self.done - self.taken) * 1000)
        if self.output is not None:
            out["output"] = self.output
        if self.error is not None:
            out["error"] = self.error
        if self.worker_id:
            out["workerId"] = self.worker_id
        return out

    def snapshot(self) -> dict:
        """view() plus input, the streamed outputs and their arrival times, and done_posts (tests)."""
        return {**self.view(), "input": self.input, "stream": [c[1] for c in self.chunks],
                "stream_times": [c[0] for c in self.chunks], "done_posts": self.done_posts,
                "submitted": self.submitted, "taken": self.taken, "done": self.done}


@dataclass
class Worker:
    id: str
    started: float
    managed: bool  # started through worker_factory (the double stops it when idle)
    state: str = "initializing"  # → "ready" on its first job-take
    handle: Any = None
    last_seen: float = 0.0
    idle_since: float = 0.0
    stopping: bool = False
    asking: int = 0  # how many jobs its job-take held right now asks for (0: none held)


class PlatformState:
    """Jobs and workers of one endpoint. Every method takes the lock; `cond` is notified on change."""

    def __init__(self, execution_timeout_s: float) -> None:
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.jobs: dict[str, Job] = {}
        self.pending: deque[str] = deque()
        self.workers: dict[str, Worker] = {}
        self.stops: dict[str, list[str]] = {}  # worker id → job ids to stop (job-stop hands them out)
        self.counts: Counter[str] = Counter()  # requests per route name
        self.completed = self.failed = 0
        self.execution_timeout_s = execution_timeout_s
        self._ids = itertools.count(1)

    # -- jobs -------------------------------------------------------------------------------------
    def submit(self, job_input: Any, policy: dict | None = None) -> Job:
        """Queue a job; policy.executionTimeout (ms) overrides the endpoint's execution timeout."""
        return self.submit_many([job_input], policy)[0]

    def submit_many(self, inputs: list[Any], policy: dict | None = None) -> list[Job]:
        """Queue jobs at one instant: a worker's next take sees them all (as when they queued while it
        was busy)."""
        timeout_ms = (policy or {}).get("executionTimeout")
        timeout_s = timeout_ms / 1000 if isinstance(timeout_ms, (int, float)) else self.execution_timeout_s
        with self.cond:
            jobs = [Job(f"job-{next(self._ids)}", job_input, time.monotonic(), timeout_s) for job_input in inputs]
            for job in jobs:
                self.jobs[job.id] = job
                self.pending.append(job.id)
            self.cond.notify_all()
            return jobs

    def take(self, worker_id: str, n: int, hold_s: float, stopping: threading.Event) -> list[Job]:
        """Up to n queued jobs for worker_id, waiting up to hold_s for one (a long-poll)."""
        with self.cond:
            self.seen(worker_id, took=True)
            worker = self.workers[worker_id]
            worker.asking = n
            self.cond.wait_for(lambda: self.pending or stopping.is_set(), hold_s)
            worker.asking = 0
            taken = []
            while self.pending and len(taken) < n and not stopping.is_set():
                job = self.jobs[self.pending.popleft()]
                job.status, job.worker_id, job.taken = "IN_PROGRESS", worker_id, time.monotonic()
                taken.append(job)
            self.cond.notify_all()
            return taken

    def stop_signals(self, worker_id: str, hold_s: float, stopping: threading.Event) -> list[str]:
        """Job ids worker_id must stop, waiting up to hold_s for one (a long-poll)."""
        with self.cond:
            self.seen(worker_id)
            self.cond.wait_for(lambda: self.stops.get(worker_id) or stopping.is_set(), hold_s)
            return self.stops.pop(worker_id, [])

    def result(self, job_id: str, body: dict) -> None:
        """A job-done POST: a progress update (status IN_PROGRESS), or the final output / error. A job
        already terminal (cancelled, timed out) keeps its status."""
        with self.cond:
            job = self.jobs.get(job_id)
            if job is None:
                return
            if body.get("status") == "IN_PROGRESS":
                job.progress = body.get("output")
            else:
                job.done_posts += 1
                if job.status == "IN_PROGRESS":
                    job.output = body.get("output")
                    job.error = body.get("error")
                    job.status = "FAILED" if job.error is not None else "COMPLETED"
                    job.done = time.monotonic()
                    if job.status == "FAILED":
                        self.failed += 1
                    else:
                        self.completed += 1
                    self._became_idle(job.worker_id)
            self.cond.notify_all()

    def stream(self, job_id: str, body: dict) -> None:
        """A job-stream POST: one more chunk ({"output": X})."""
        with self.cond:
            job = self.jobs.get(job_id)
            if job is not None and job.status == "IN_PROGRESS":
                job.chunks.append((time.monotonic(), body.get("output")))
                self.cond.notify_all()

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job, or ask its worker to stop a running one (delivered by job-stop)."""
        with self.cond:
            job = self.jobs.get(job_id)
            if job is None or job.status in TERMINAL:
                return job
            self._end(job, "CANCELLED")
            self.cond.notify_all()
            return job

    def _end(self, job: Job, status: str) -> None:
        if job.status == "IN_QUEUE":
            self.pending.remove(job.id)
        was_running = job.status == "IN_PROGRESS"
        job.status, job.done = status, time.monotonic()
        if was_running and job.worker_id is not None:
            self.stops.setdefault(job.worker_id, []).append(job.id)
            self._became_idle(job.worker_id)

    def purge(self) -> int:
        """Cancel every queued job (running ones are untouched); returns how many."""
        with self.cond:
            removed = [self.jobs[i] for i in self.pending]
            for job in removed:
                job.status, job.done = "CANCELLED", time.monotonic()
            self.pending.clear()
            self.cond.notify_all()
            return len(removed)

    def expire(self, now: float) -> None:
        """Jobs running past their execution timeout become TIMED_OUT, and their worker is told to stop."""
        with self.cond:
            for job in self.jobs.values():
                if job.status == "IN_PROGRESS" and now - job.taken > job.execution_timeout_s:
                    self._end(job, "TIMED_OUT")
                    self.cond.notify_all()

    def running(self, worker_id: str) -> int:
        return sum(1 for j in self.jobs.values() if j.status == "IN_PROGRESS" and j.worker_id == worker_id)

    # -- workers ----------------------------------------------------------------------------------
    def seen(self, worker_id: str, took: bool = False) -> None:
        """A request from worker_id (lock held): an unknown id is a worker the test started itself."""
        now = time.monotonic()
        worker = self.workers.get(worker_id)
        if worker is None:
            worker = self.workers[worker_id] = Worker(worker_id, now, managed=False, idle_since=now)
        worker.last_seen = now
        if took and worker.state == "initializing":
            worker.state, worker.idle_since = "ready", now

    def _became_idle(self, worker_id: str | None) -> None:
        worker = self.workers.get(worker_id or "")
        if worker is not None and self.running(worker.id) == 0:
            worker.idle_since = time.monotonic()

    def health(self) -> dict:
        """GET /health's body (§3.4): jobs and workers counts; throttled and unhealthy stay 0 here."""
        with self.cond:
            states = Counter(j.status for j in self.jobs.values())
            workers = Counter()
            for worker in self.workers.values():
                if worker.state == "initializing":
                    workers["initializing"] += 1
                else:
                    workers["running" if self.running(worker.id) else "idle"] += 1
            return {"jobs": {"completed": self.completed, "failed": self.failed, "inProgress": states["IN_PROGRESS"],
                             "inQueue": states["IN_QUEUE"], "retried": 0},
                    "workers": {"idle": workers["idle"], "running": workers["running"],
                                "initializing": workers["initializing"], "ready": workers["idle"],
                                "throttled": 0, "unhealthy": 0}}

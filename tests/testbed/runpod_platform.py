"""A loopback DOUBLE of Runpod Serverless for ONE queue endpoint — not Runpod, for tests only.

Runpod's serverless platform is closed code and unreachable from the test machines. This double
plays both of its sides for one endpoint on 127.0.0.1, so the REAL, unmodified runpod SDK worker
loop and podtui's client code meet in the middle:

1. The job-queue face the SDK worker talks to (SERVERLESS.md §1.6, §1.9; every call the SDK makes):
   `GET /v2/{ep}/job-take/{worker}` (one job, long-poll `long_poll_s` then 204),
   `GET /v2/{ep}/job-take-batch/{worker}?batch_size=N` (a JSON list), `GET /v2/{ep}/job-stop/{worker}`
   (long-poll `stop_poll_s`; 200 `{"jobsToStop": [...]}`), `POST /v2/{ep}/job-done/{worker}/{job}`
   and `POST /v2/{ep}/job-stream/{worker}/{job}` (bodies read as raw text and parsed as JSON: the SDK
   sends JSON as application/x-www-form-urlencoded), `GET /v2/{ep}/ping/{worker}`. The worker's key
   (`worker_key`) arrives raw in Authorization, as the SDK sends it.
2. The runtime face clients use (§3.2, §3.4), under `/v2/{ep}`, with the user's `api_key` as
   `Authorization: Bearer <key>` or the raw key (§3.1; anything else is 401): POST /run, POST
   /runsync (?wait=ms, 1000–300000, default 90000; a job that outlives it answers with its
   non-terminal status), GET /status/{id}, GET /stream/{id} (drains the chunks since the last call;
   ?wait=ms holds an empty answer up to that long), POST /cancel/{id} (a running job's worker is
   told through job-stop), POST /purge-queue, GET /health, and `/openai/v1/{path}` mapped to a job
   `{"openai_route": "/v1/{path}", "openai_input": body}` (a GET, or no body: no openai_input; §2.1).
3. Workers, for cold starts: with `worker_factory` (env dict → an object with `.stop()`), a job that
   finds no worker starts one after `cold_start_s`; it shows as `initializing` in /health until its
   first job-take, then idle/running; after `idle_timeout_s` without a job the double stops it. At
   most `workers_max` workers; one starts at a time while jobs wait. Without a factory the test
   starts workers itself and the double only tracks them by their requests (one silent for
   SEEN_TIMEOUT_S and running nothing is gone).

ASSUMED, because Runpod does not document it (§2.1, §3.4, Appendix A's limits):
- `/openai/v1/...` with `"stream": true` answers `text/event-stream`, writing each job-stream output
  (a string as it is; anything else as one `data: <json>` event) as it arrives; the response starts
  with the first chunk, so a job that fails before any answers like a non-streaming one. An error
  after the first chunk just ends the stream (clients read /status for it, §5 #6).
- Without stream it answers the job's output; with return_aggregate_stream that is a list, and a list
  of one value is unwrapped (worker-vllm's non-streaming answers are one JSON value, §2.5).
- A job that does not complete answers HTTP 500 `{"error": <the job's error>, "status": <state>}`;
  an /openai request whose job is not done within `openai_timeout_s` answers 504.
- /health's workers add `initializing`, `ready` (= idle), `throttled` and `unhealthy` (0) to the
  documented idle/running (§3.4's third-party captures). /health starts no worker.
- Jobs run past their executionTimeout (policy, ms; default `execution_timeout_s`) become
  TIMED_OUT and their worker is told to stop; job ids are `job-<n>`; 404s are `{"error": "..."}`.

Python API (tests): `PlatformDouble(...).start()` or `with PlatformDouble(...) as p:`; `base_url`,
`runtime_url`, `worker_env(worker_id)` (every RUNPOD_* variable of §1.9's recipe, skip-checks
included; HOME is the caller's), `jobs`, `job(id)`, `submit(input)`, `submit_many(inputs)`, `wait_for(id)`, `health()`,
`worker_starts`, `counts` (requests per route). tests/testbed/sdk_worker.py runs the real SDK worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.testbed.runpod_queue import TERMINAL, PlatformState, Worker
from tests.testbed.runpod_routes import RouteMixin

SEEN_TIMEOUT_S = 3.0  # a test-started worker silent this long (and running nothing) is gone
TICK_S = 0.05


class PlatformDouble:
    """One serverless queue endpoint on 127.0.0.1 (see the module docstring)."""

    def __init__(self, endpoint_id: str = "ep1", api_key: str = "test-runpod-key", *,
                 worker_factory: Callable[[dict[str, str]], Any] | None = None, cold_start_s: float = 0.0,
                 idle_timeout_s: float = 30.0, workers_max: int = 1, long_poll_s: float = 0.5,
                 stop_poll_s: float = 1.0, execution_timeout_s: float = 600.0,
                 openai_timeout_s: float = 300.0) -> None:
        self.endpoint_id = endpoint_id
        self.api_key = api_key
        self.worker_key = f"worker-key-{endpoint_id}"  # what the platform gives its workers (RUNPOD_AI_API_KEY)
        self.worker_factory = worker_factory
        self.cold_start_s = cold_start_s
        self.idle_timeout_s = idle_timeout_s
        self.workers_max = workers_max
        self.long_poll_s = long_poll_s
        self.stop_poll_s = stop_poll_s
        self.openai_timeout_s = openai_timeout_s
        self.state = PlatformState(execution_timeout_s)
        self.worker_starts = 0
        self.worker_errors: list[str] = []
        self.stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "PlatformDouble":
        """Listen on 127.0.0.1:<free port> and start the ticker (timeouts, idle stops, scale-up)."""
        double = self

        class Handler(RouteMixin, BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body waits for the client's
            # delayed ACK of the headers: 40 ms per job-stream POST (measured), a stall Runpod has not.
            disable_nagle_algorithm = True
            platform = double

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        for target in (self._server.serve_forever, self._tick):
            thread = threading.Thread(target=target, daemon=True, name=f"platform-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop every worker the factory started, end long-polls and streams, close the server."""
        self.stopping.set()
        with self.state.cond:
            self.state.cond.notify_all()
            handles = [w.handle for w in self.state.workers.values() if w.managed and w.handle is not None]
        for handle in handles:
            _stop_quietly(handle)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> "PlatformDouble":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the double first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def runtime_url(self) -> str:
        """What clients use: https://api.runpod.ai/v2/<endpoint> on Runpod."""
        return f"{self.base_url}/v2/{self.endpoint_id}"

    def worker_env(self, worker_id: str = "w1") -> dict[str, str]:
        """The RUNPOD_* environment of a worker of this endpoint (§1.9's recipe): job URLs, its key and id,
        a 1 s heartbeat, INFO logs, and the fitness checks skipped (they connect to 8.8.8.8, §1.7)."""
        ep, base = self.endpoint_id, f"{self.base_url}/v2/{self.endpoint_id}"
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu=SIM",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=SIM",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=SIM",
            "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID",
            "RUNPOD_AI_API_KEY": self.worker_key, "RUNPOD_POD_ID": worker_id, "RUNPOD_ENDPOINT_ID": ep,
            "RUNPOD_POD_HOSTNAME": f"{worker_id}-sim", "RUNPOD_PING_INTERVAL": "1000", "RUNPOD_LOG_LEVEL": "INFO",
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true", "RUNPOD_SKIP_GPU_CHECK": "true",
        }

    # -- what tests read ----------------------------------------------------------------------------
    @property
    def jobs(self) -> list[dict]:
        """Every job so far, oldest first: Job.snapshot() (id, status, input, output, error, stream, …)."""
        with self.state.lock:
            return [job.snapshot() for job in self.state.jobs.values()]

    def job(self, job_id: str) -> dict:
        with self.state.lock:
            return self.state.jobs[job_id].snapshot()

    @property
    def counts(self) -> dict[str, int]:
        """Requests received per route name (job-take, job-stop, run, openai, …)."""
        with self.state.lock:
            return dict(self.state.counts)

    @property
    def workers(self) -> list[dict]:
        """Each worker: id, state (initializing | ready), managed (factory-started), running (jobs), and
        asking (how many jobs the job-take it holds open asks for; 0 when none is held)."""
        with self.state.lock:
            return [{"id": w.id, "state": w.state, "managed": w.managed, "running": self.state.running(w.id),
                     "asking": w.asking} for w in self.state.workers.values()]

    def health(self) -> dict:
        """The body GET /health answers."""
        return self.state.health()

    def submit(self, job_input: Any, policy: dict | None = None) -> str:
        """Queue a job as POST /run would; returns its id."""
        job = self.state.submit(job_input, policy)
        self.wake()
        return job.id

    def submit_many(self, inputs: list[Any], policy: dict | None = None) -> list[str]:
        """Queue several jobs at one instant (one take can get them all); their ids."""
        jobs = self.state.submit_many(inputs, policy)
        self.wake()
        return [job.id for job in jobs]

    def wait_for(self, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout_s: float = 60.0) -> dict:
        """Block until the job is in one of statuses; its snapshot. TimeoutError with its state otherwise."""
        with self.state.cond:
            job = self.state.jobs[job_id]
            if not self.state.cond.wait_for(lambda: job.status in statuses, timeout_s):
                raise TimeoutError(f"{job_id} still {job.status} after {timeout_s}s")
            return job.snapshot()

    # -- workers ------------------------------------------------------------------------------------
    def wake(self) -> None:
        """A job arrived: start a worker if one is needed and allowed (checked by the ticker too)."""
        if self.worker_factory is None or self.stopping.is_set():
            return
        with self.state.cond:
            workers = self.state.workers.values()
            live = [w for w in workers if not w.stopping]
            busy = all(self.state.running(w.id) for w in live if w.state == "ready")
            wanted = (self.state.pending and len(live) < self.workers_max
                      and not any(w.state == "initializing" for w in live) and busy)
            if not wanted:
                return
            self.worker_starts += 1
            worker_id = f"w{self.worker_starts}"
            worker = self.state.workers[worker_id] = Worker(worker_id, time.monotonic(), managed=True)
        threading.Thread(target=self._boot_worker, args=(worker,), daemon=True, name=f"boot-{worker_id}").start()

    def _boot_worker(self, worker: Worker) -> None:
        if self.stopping.wait(self.cold_start_s):
            return
        try:
            handle = self.worker_factory(self.worker_env(worker.id))
        except Exception as exc:  # the test sees it in worker_errors; the worker is gone
            self.worker_errors.append(f"{worker.id}: {exc!r}")
            with self.state.cond:
                self.state.workers.pop(worker.id, None)
            return
        with self.state.cond:
            worker.handle = handle
        if self.stopping.is_set():
            _stop_quietly(handle)

    def _tick(self) -> None:
        while not self.stopping.wait(TICK_S):
            now = time.monotonic()
            self.state.expire(now)
            idle: list[Worker] = []
            with self.state.cond:
                for worker in list(self.state.workers.values()):
                    if self.state.running(worker.id) or worker.stopping:
                        continue
                    if worker.managed and worker.state == "ready" and now - worker.idle_since > self.idle_timeout_s:
                        worker.stopping = True
                        idle.append(worker)
                    elif not worker.managed and now - worker.last_seen > SEEN_TIMEOUT_S:
                        del self.state.workers[worker.id]
            for worker in idle:
                threading.Thread(target=self._retire, args=(worker,), daemon=True).start()
            self.wake()

    def _retire(self, worker: Worker) -> None:
        if worker.handle is not None:
            _stop_quietly(worker.handle)
        with self.state.cond:
            self.state.workers.pop(worker.id, None)
            self.state.cond.notify_all()


def _stop_quietly(handle: Any) -> None:
    try:
        handle.stop()
    except Exception:  # a worker that is already gone
        pass


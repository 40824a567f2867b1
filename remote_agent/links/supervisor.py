"""LinkSet: the server pod's link processes, each restarted with backoff, their state for `status`.

One asyncio task per link owns that link's process and state (written only by Link.run). States:
starting (ssh runs, its forward not listening yet) → up (127.0.0.1:LOCAL listens: read from
/proc/net/tcp, never by connecting, since a connection through the link takes the backend's one
client slot) → down (ssh ended; restarted after a backoff of 1, 2, 4 … 15 s, reset once a link stays
up 30 s) or refused (the backend presented another host key than podtui pinned: never retried, a new
`cluster.link` with a verified key is needed) → stopped. The link's session on the backend
(session.py) prints a line for each new ggml-rpc-server process there; a line naming another process
than the one seen before is a backend restart, kept as `last_backend_restart` (a ggml-rpc-server that
died and came back within a second answers the next handshake, so nothing else can name it). The
server role's engine needs no hook:
llama-server aborts when a link drops, and its pre-start handshake (engine/backends.py) waits,
paused, until every link answers again, then starts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from remote_agent.engine.rpc_wire import listening
from remote_agent.links.command import ssh_command
from remote_agent.links.session import parse_line
from remote_agent.links.spec import LinkSpec

log = logging.getLogger("remote_agent.links")
STARTING, UP, DOWN, REFUSED, STOPPED = "starting", "up", "down", "refused", "stopped"
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0)
STABLE_S = 30.0       # up this long: the next failure starts the backoff again
UP_TIMEOUT_S = 20.0   # ssh running this long without its forward listening: ended and retried
_HOST_KEY = ("host identification has changed", "host key verification failed", "no matching host key",
             "host key for", "has changed and you have requested strict checking")


def classify(stderr: str) -> tuple[str, str]:
    """(state, sentence) for an ssh that ended with stderr: refused for a host key podtui did not pin,
    else down with the telling line."""
    lower = stderr.lower()
    if any(marker in lower for marker in _HOST_KEY):
        return REFUSED, ("the backend presented a host key other than the one podtui verified: the link was "
                         "refused before logging in and nothing was sent; check the backend pod, then run "
                         "`podtui cluster link` again")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return DOWN, (lines[-1] if lines else "ssh ended without a message")


class Link:
    """One link's process and state; `run` is its only writer."""

    def __init__(self, spec: LinkSpec, argv: list[str], listening_probe: Callable[[int], bool]) -> None:
        self.spec = spec
        self.argv = argv
        self.listening = listening_probe
        self.state = STARTING
        self.since = time.monotonic()
        self.restarts = 0
        self.last_error: str | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.rpc_server: tuple[int, int] | None = None  # (pid, start_ticks) of the backend's ggml-rpc-server
        self.last_backend_restart: dict | None = None  # {"pid", "previous_pid", "at" (time.time())}
        self.restarted_at: float | None = None  # monotonic

    def note_line(self, line: str) -> None:
        """One line of the link's session (session.py); a new ggml-rpc-server process is a restart."""
        key = parse_line(line)
        if key is None:
            return
        if self.rpc_server is not None and key != self.rpc_server:
            self.last_backend_restart = {"pid": key[0], "previous_pid": self.rpc_server[0], "at": time.time()}
            self.restarted_at = time.monotonic()
            log.warning("link %s: the backend's ggml-rpc-server restarted (pid %d, now %d); a llama-server "
                        "abort just before came from this backend", self.spec.name, self.rpc_server[0], key[0])
        self.rpc_server = key

    def _set(self, state: str, error: str | None = None) -> None:
        if state != self.state:
            log.info("link %s (%s → %s:%d): %s%s", self.spec.name, self.spec.endpoint, self.spec.host,
                     self.spec.port, state, f": {error}" if error else "")
        self.state, self.since = state, time.monotonic()
        if error:
            self.last_error = error

    async def run(self) -> None:
        """Keep the link up until cancelled (then its ssh is stopped)."""
        failures = 0
        try:
            while True:
                self._set(STARTING)
                started = time.monotonic()
                stderr = await self._one_run()
                state, error = classify(stderr)
                self._set(state, error)
                if state == REFUSED:
                    return
                failures = 0 if time.monotonic() - started > STABLE_S else failures + 1
                self.restarts += 1
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S)) - 1] if failures else BACKOFF_S[0])
        finally:
            await self._stop()

    async def _one_run(self) -> str:
        """Run ssh once; returns its stderr. The state turns up once the forward listens."""
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        reader = asyncio.create_task(self.proc.stderr.read())
        lines = asyncio.create_task(self._read_session(self.proc.stdout))
        deadline = time.monotonic() + UP_TIMEOUT_S
        while self.proc.returncode is None:
            if self.state == STARTING and self.listening(self.spec.local_port):
                self._set(UP)
            elif self.state == STARTING and time.monotonic() > deadline:
                self._kill()
            try:
                await asyncio.wait_for(self.proc.wait(), 0.1 if self.state == STARTING else 1.0)
            except TimeoutError:
                pass
        data = await reader
        await lines
        return data.decode(errors="replace")

    async def _read_session(self, stdout: asyncio.StreamReader) -> None:
        while raw := await stdout.readline():
            self.note_line(raw.decode(errors="replace"))

    def _kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    async def _stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            self._kill_proc(proc)
            try:
                await asyncio.wait_for(proc.wait(), 3)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self.state != REFUSED:  # a refusal stays visible until the next cluster.link
            self._set(STOPPED)

    @staticmethod
    def _kill_proc(proc: asyncio.subprocess.Process) -> None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # the remote command ends at EOF: a clean goodbye
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def snapshot(self) -> dict:
        """{name, endpoint, backend ("host:port" of its sshd), state, for_s, restarts, last_error,
        rpc_server_pid (the backend's ggml-rpc-server as its session last reported it, or None),
        last_backend_restart ({"pid", "previous_pid", "s_ago"} or None)}."""
        restart = None
        if self.last_backend_restart is not None:
            restart = {"pid": self.last_backend_restart["pid"], "previous_pid": self.last_backend_restart["previous_pid"],
                       "s_ago": round(time.monotonic() - self.restarted_at, 1)}
        return {"name": self.spec.name, "endpoint": self.spec.endpoint,
                "backend": f"{self.spec.host}:{self.spec.port}", "rpc_port": self.spec.rpc_port,
                "state": self.state, "for_s": round(time.monotonic() - self.since, 1),
                "restarts": self.restarts, "last_error": self.last_error,
                "rpc_server_pid": self.rpc_server[0] if self.rpc_server else None, "last_backend_restart": restart}


class LinkSet:
    """The links of this server pod, replaced as a whole by `cluster.link`. Files live in
    state_dir/links: the cluster's private key (0600) and the backends' known_hosts."""

    def __init__(self, state_dir: Path, ssh: str | None = None) -> None:
        self.dir = Path(state_dir) / "links"
        self.ssh = ssh or shutil.which("ssh") or "ssh"
        self.links: list[Link] = []
        self.tasks: list[asyncio.Task] = []

    @property
    def key_file(self) -> Path:
        return self.dir / "cluster_key"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    def write_secrets(self, known_hosts: str, private_key: str) -> None:
        """The key is born 0600 (no window where it is readable), in a 0700 folder."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        self.known_hosts.write_text(known_hosts if known_hosts.endswith("\n") else known_hosts + "\n")
        self.key_file.unlink(missing_ok=True)
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private_key if private_key.endswith("\n") else private_key + "\n")

    async def replace(self, specs: tuple[LinkSpec, ...]) -> None:
        """Stop the current links and start specs' (files must be written first)."""
        await self.stop()
        for spec in specs:
            link = Link(spec, ssh_command(spec, self.key_file, self.known_hosts, self.ssh),
                        lambda port: listening(port, "127.0.0.1"))
            self.links.append(link)
            self.tasks.append(asyncio.create_task(link.run(), name=f"link-{spec.name}"))

    async def wait_settled(self, timeout_s: float) -> None:
        """Until every link is up or refused, or timeout_s passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(link.state not in (UP, REFUSED) for link in self.links):
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Stop every link (their ssh processes end) and forget them."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.links, self.tasks = [], []

    async def forget(self) -> None:
        """stop, then delete the key and known_hosts."""
        await self.stop()
        for path in (self.key_file, self.known_hosts):
            path.unlink(missing_ok=True)

    def snapshot(self) -> list[dict]:
        return [link.snapshot() for link in self.links]

    def restarted_within(self, endpoint: str, seconds: float) -> str | None:
        """The name of the link serving endpoint ("127.0.0.1:PORT") when its backend's ggml-rpc-server
        restarted in the last seconds, else None: who to name for a llama-server abort that the
        pre-start handshake cannot pin on anyone (every backend answers again)."""
        for link in self.links:
            if (link.spec.endpoint == endpoint and link.restarted_at is not None
                    and time.monotonic() - link.restarted_at <= seconds):
                return link.spec.name
        return None

    def annotate(self, cluster: dict) -> None:
        """The server's status.cluster block gains "links" (snapshots), and each backend entry whose
        endpoint a link serves its "link" (name), "link_state" and "backend_restarted_s_ago" (None when
        its session never reported a restart), so a backend found down by the handshake, or one that
        restarted, is named as podtui named it."""
        cluster["links"] = self.snapshot()
        by_endpoint = {link.spec.endpoint: link for link in self.links}
        for entry in cluster.get("backends") or []:
            link = by_endpoint.get(entry.get("endpoint"))
            if link is not None:
                entry.update(link=link.spec.name, link_state=link.state, backend_restarted_s_ago=(
                    round(time.monotonic() - link.restarted_at, 1) if link.restarted_at is not None else None))

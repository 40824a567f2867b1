"""`remote-agent daemon`: the Unix-socket server (mode 0600, parent 0700).

Each connection gets the hello line, then its request lines are read with a bounded reader and
answered concurrently; every bad line gets one error line and the daemon carries on. All engine
state lives in the supervisor's owner task (see engine/supervisor.py); this module only talks.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from remote_agent import __version__, engine_key, hostkey_block, protocol
from remote_agent.child_env import secret_values
from remote_agent.engine.adapters import ADAPTERS
from remote_agent.engine.logbuf import LogBuffer
from remote_agent.engine.orphan import stop_orphan
from remote_agent.paths import UnsafeSocketPlace, prepare_socket_dir
from remote_agent.server.handlers import Agent
from remote_agent.server.linereader import OverlongLine, bounded_lines
from remote_agent.server.methods import METHODS, ParamError
from remote_agent.server.settings import AgentSettings

MAX_IN_FLIGHT = 32  # per connection; more gets a `busy` error instead of unbounded tasks
log = logging.getLogger("remote_agent.daemon")


class DaemonError(Exception):
    """The daemon cannot start (socket taken, directory not writable); the message says what to do."""


class Connection:
    """One client: the hello line, then every request line answered by a task of its own (at most
    MAX_IN_FLIGHT); log follows end when the client hangs up."""

    def __init__(self, agent: Agent, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.agent = agent
        self.reader = reader
        self.writer = writer
        self.tasks: dict[Any, asyncio.Task] = {}
        self.streams: set[asyncio.Task] = set()  # log follows: ended when the client hangs up
        self.cancelled_by_client: set[asyncio.Task] = set()
        self._anonymous = 0

    def send_nowait(self, message: dict) -> None:
        """Queue one message for the client (nothing when it is gone); never waits."""
        if not self.writer.is_closing():
            self.writer.write(protocol.encode(message))

    async def send(self, message: dict) -> None:
        """Send one message and wait for the socket to drain; a client that went away is ignored."""
        self.send_nowait(message)
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            pass

    async def serve(self) -> None:
        """Greet, read request lines until the client closes, then wait for its requests to finish."""
        await self.send(protocol.hello(__version__))
        async for line in bounded_lines(self.reader, protocol.MAX_LINE_BYTES):
            await self.handle_line(line)
        for task in list(self.streams):  # a follow never ends by itself
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def handle_line(self, line: bytes | OverlongLine) -> None:
        """Answer a bad line at once with one error (line_too_long, bad_json, bad_request, unknown_method,
        bad_params, busy); run a good one in a task of its own (cancel is answered here)."""
        if isinstance(line, OverlongLine):
            return await self.send(protocol.error(None, protocol.LINE_TOO_LONG,
                                                  f"line of {line.size} bytes exceeds the limit of "
                                                  f"{protocol.MAX_LINE_BYTES}; send smaller requests"))
        try:
            request = protocol.parse_request(line)
            if request.method == "cancel":
                return await self.cancel(request)
            spec = METHODS.get(request.method)
            if spec is None:
                raise protocol.ProtocolError(protocol.UNKNOWN_METHOD, f"unknown method {request.method!r}; known: "
                                             f"{', '.join(sorted(METHODS))}, cancel", request.id)
            try:
                spec.check(request.params)
            except ParamError as exc:
                raise protocol.ProtocolError(protocol.BAD_PARAMS, f"{request.method}: {exc}", request.id) from None
            if request.id is not None and request.id in self.tasks:
                raise protocol.ProtocolError(protocol.BAD_REQUEST, f"id {request.id!r} is already in flight; use a "
                                             "new id per request", request.id)
            if len(self.tasks) >= MAX_IN_FLIGHT:
                raise protocol.ProtocolError(protocol.BUSY, f"{MAX_IN_FLIGHT} requests already in flight on this "
                                             "connection; wait for answers first", request.id)
        except protocol.ProtocolError as exc:
            return await self.send(protocol.error(exc.request_id, exc.code, exc.message))
        key = request.id
        if key is None:
            self._anonymous += 1
            key = ("anonymous", self._anonymous)
        task = asyncio.create_task(self.run(request, spec.handler))
        self.tasks[key] = task
        task.add_done_callback(lambda t: self._finished(key, t, request))
        if request.method == "logs.tail" and request.params.get("follow"):
            self.streams.add(task)
            task.add_done_callback(self.streams.discard)

    def _finished(self, key: Any, task: asyncio.Task, request: protocol.Request) -> None:
        self.tasks.pop(key, None)
        if task in self.cancelled_by_client:  # cancelled before it ran a step: it never answered itself
            self.cancelled_by_client.discard(task)
            self.send_nowait(protocol.error(request.id, protocol.CANCELLED, f"{request.method} was cancelled"))

    async def cancel(self, request: protocol.Request) -> None:
        """`cancel` {"id"}: cancel that request (it answers `cancelled` itself); replies {"cancelled": bool}
        when the cancel has an id, bad_params when params.id is not an id."""
        target = request.params.get("id")
        if isinstance(target, bool) or not isinstance(target, (int, str)):
            return await self.send(protocol.error(request.id, protocol.BAD_PARAMS,
                                                  "cancel needs params.id: the id of the request to cancel"))
        task = self.tasks.get(target)
        if task is not None:
            self.cancelled_by_client.add(task)
            asyncio.get_running_loop().call_soon(task.cancel)  # after the task's first step, so it can answer
        if request.id is not None:
            await self.send(protocol.result(request.id, {"cancelled": task is not None}))

    async def run(self, request: protocol.Request, handler: str) -> None:
        """Run one request's handler and send its final line: the result, or an error with the WireError's
        code and message (internal for any other exception, cancelled when the client cancelled it)."""
        rid = request.id

        def emit(kind: str, data: dict) -> None:
            self.send_nowait(protocol.event(rid, kind, data))

        try:
            if handler == "logs_tail":
                value = await self.logs_tail(request)
            else:
                value = await getattr(self.agent, handler)(request.params, emit)
            reply = protocol.result(rid, value)
        except asyncio.CancelledError:
            if asyncio.current_task() not in self.cancelled_by_client:
                raise
            reply = protocol.error(rid, protocol.CANCELLED, f"{request.method} was cancelled")
        except protocol.WireError as exc:  # EngineFailure, ModelError, RequestError, ...
            reply = protocol.error(rid, exc.code, exc.message)
        except Exception as exc:
            log.exception("%s failed", request.method)
            reply = protocol.error(rid, protocol.INTERNAL, f"{request.method} failed inside the agent: {exc!r}")
        finally:
            self.cancelled_by_client.discard(asyncio.current_task())
        await self.send(reply)

    async def logs_tail(self, request: protocol.Request) -> dict:
        """`logs.tail`: the last n lines of source as log events, then with follow every new one until
        cancelled. Returns {"lines": count}, plus "dropped" and "cancelled" when a follow was cancelled."""
        params = request.params
        n = params.get("n", 100) if params.get("n") is not None else 100
        sources = Agent.log_sources(params.get("source") or "all")
        logbuf = self.agent.logbuf
        # Subscribe and copy the backlog in one step (no await between): no gap, no duplicate.
        follower = logbuf.follow(sources) if params.get("follow") else None
        backlog = logbuf.tail(n, sources)
        count = 0
        try:
            for entry in backlog:
                await self.send(protocol.event(request.id, "log", entry))
                count += 1
            if follower is None:
                return {"lines": count}
            try:
                async for entry in follower:
                    await self.send(protocol.event(request.id, "log", entry))
                    count += 1
            except asyncio.CancelledError:
                if asyncio.current_task() not in self.cancelled_by_client:
                    raise
                for entry in follower.flush():  # what was queued, and the marker for what was lost
                    self.send_nowait(protocol.event(request.id, "log", entry))
                    count += 1
                return {"lines": count, "dropped": follower.total_dropped, "cancelled": True}
        finally:
            if follower is not None:
                logbuf.unfollow(follower)
        return {"lines": count}


class AgentDaemon:
    """The daemon: the socket server, the Agent, and the supervisor's owner task."""

    def __init__(self, settings: AgentSettings, *, autostart: bool = True, logbuf: LogBuffer | None = None) -> None:
        self.settings = settings
        self.autostart = autostart
        self.logbuf = logbuf or LogBuffer()
        self.agent = Agent(settings, self.logbuf)
        self._connections: set[asyncio.Task] = set()

    async def run(self) -> None:
        """Listen, stop the engine a daemon that died left running, start the engine's owner task and
        boot, serve until SIGTERM or SIGINT, then stop the engine and remove the socket. Raises
        DaemonError when the socket cannot be used."""
        loop = asyncio.get_running_loop()
        self.logbuf.bind_loop(loop)
        path = self.settings.socket
        server = await self._listen(path)
        log.info("remote-agent %s listening on %s (role %s, engine port %d, models in %s)", __version__, path,
                 self.agent.role.role, self.agent.role.settings.port or self.settings.port, self.settings.models_dir)
        key = self.agent.api_key
        if self.agent.role.role in ("backend", "none"):
            log.info("no HTTP engine in this role: the engine API key is not used")
        elif key.warning:
            log.warning(key.warning)
        elif key.source == engine_key.GENERATED:
            log.info("the engine requires an API key, kept in %s; podtui shows it beside the base URL",
                     engine_key.key_file(self.settings.state_dir))
        else:
            log.info("the engine requires the API key from %s", key.source)
        try:
            from remote_agent.models import store
            store.ensure_layout(self.settings.models_dir)
        except OSError as exc:
            log.warning("cannot prepare the models folder %s (%s); downloads will fail until it is writable",
                        self.settings.models_dir, exc.strerror)
        # Before anything of ours talks to the engine port: a request from the activity clock would
        # hold up the orphan's graceful exit (llama-server waits for its handlers).
        await asyncio.to_thread(stop_orphan, self.agent.supervisor.engine_record, self.settings.timings.stop_grace)
        activity_done = threading.Event()
        self.agent.start_activity_clock(activity_done)
        owner = asyncio.create_task(self.agent.supervisor.run(), name="engine-owner")
        watchers = self.agent.start_watchers()  # an RPC server's liveness check
        boot = asyncio.create_task(self.agent.boot()) if self.autostart else None
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            log.info("shutting down: stopping the engine (its config stays saved)")
            activity_done.set()
            server.close()
            if boot is not None:
                boot.cancel()
            for task in watchers:
                task.cancel()
            await self.agent.links.stop()
            for task in list(self._connections):
                task.cancel()
            if not owner.done():
                await self.agent.supervisor.shutdown()
            await asyncio.gather(owner, return_exceptions=True)
            try:
                path.unlink()
            except OSError:
                pass

    async def _listen(self, path: Path) -> asyncio.AbstractServer:
        try:
            prepare_socket_dir(path)
        except UnsafeSocketPlace as exc:
            raise DaemonError(str(exc)) from None
        except OSError as exc:
            raise DaemonError(f"cannot create {path.parent}: {exc.strerror}; pass --socket to a writable place") from None
        if path.exists() or path.is_symlink():
            if _socket_answers(path):
                raise DaemonError(f"another daemon is already listening on {path}; stop it first "
                                  "or pass another --socket")
            path.unlink()  # stale socket of a daemon that died
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others may connect
        try:
            server = await asyncio.start_unix_server(self._client, path=str(path))
        except OSError as exc:
            raise DaemonError(f"cannot listen on {path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        return server

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        connection = Connection(self.agent, reader, writer)
        try:
            await connection.serve()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("connection handler failed")
        finally:
            for t in list(connection.tasks.values()):
                t.cancel()
            self._connections.discard(task)
            writer.close()


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
            return True
        except OSError as exc:
            return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)


class LogBufferHandler(logging.Handler):
    """The agent's own log lines into the `agent` ring buffer (logs.tail source "agent")."""

    def __init__(self, logbuf: LogBuffer) -> None:
        super().__init__()
        self.logbuf = logbuf

    def emit(self, record: logging.LogRecord) -> None:
        """Append the formatted record to the "agent" source."""
        try:
            self.logbuf.append("agent", self.format(record), record.created)
        except Exception:
            self.handleError(record)


class OneLineRedacted(logging.Filter):
    """Every record becomes one line with secrets masked, its traceback included. The daemon's
    stderr is the pod log, where podtui reads the printed host-key block: text from outside (a file
    name from the hub, an engine error) must never start a line of its own there."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        for marker in (hostkey_block.BEGIN, hostkey_block.END):  # only boot prints a real block
            text = text.replace(marker, marker.replace("-----", "~~~~~"))
        return text.replace("\r", "\\r").replace("\n", "\\n")

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite record in place (one line, secrets masked, block markers defused); always keeps it."""
        record.msg, record.args = self._clean(record.getMessage()), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            # a traceback keeps its lines, but each is marked as ours and masked
            record.exc_text = "\n".join("  | " + self._clean(line) for line in record.exc_text.splitlines())
        return True


def setup_logging(logbuf: LogBuffer, secrets: list[str], stream=None) -> None:
    """Agent logs to `stream` (stderr: the pod log) and to the log buffer, one line a record."""
    root = logging.getLogger("remote_agent")
    root.setLevel(logging.INFO)
    root.propagate = False
    redact = OneLineRedacted(secrets)
    stderr = logging.StreamHandler(stream or sys.stderr)
    stderr.setFormatter(logging.Formatter("%(asctime)s remote-agent %(levelname)s %(message)s"))
    buffered = LogBufferHandler(logbuf)
    buffered.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    for handler in (stderr, buffered):
        handler.addFilter(redact)
        root.addHandler(handler)


def run_daemon(settings: AgentSettings, *, autostart: bool = True) -> int:
    """`remote-agent daemon` until SIGTERM/SIGINT; returns the exit status (1 after printing a DaemonError)."""
    daemon = AgentDaemon(settings, autostart=autostart)
    # Engine keys too: the agent's, and one ARGS may give (adapters also mask it in command lines).
    in_args = [adapter().args_key(settings.args)[1] for adapter in ADAPTERS.values()]
    secrets = [settings.hf_token, *secret_values(), daemon.agent.api_key.value, *in_args]
    setup_logging(daemon.logbuf, [secret for secret in secrets if secret])
    try:
        asyncio.run(daemon.run())
    except DaemonError as exc:
        print(f"remote-agent daemon: {exc}", file=sys.stderr)
        return 1
    return 0

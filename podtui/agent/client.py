"""Client of the in-pod agent over a channel running `remote-agent rpc`.

Over SSH the channel is an exec channel: paramiko cannot open a remote Unix socket (no streamlocal
forwarding), so the agent's socket is reached through the bridge command, which copies lines
between its stdio and the socket. On this machine it is the same bridge as a local subprocess
(podtui.agent.local_bridge). The channel carries the JSON-lines protocol of remote_agent/protocol.py: requests, results/errors,
stream events, cancel. One reader thread routes every incoming message to the waiting request by
id, so several calls (a log follower and a status poll, say) can share one channel.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol

from remote_agent import protocol

from podtui.errors import PodtuiError

DEFAULT_AGENT_COMMAND = "remote-agent rpc"
_CLOSED = object()


class Channel(Protocol):
    """The part of paramiko's Channel the client uses; podtui.agent.local_bridge.LocalChannel has it too."""

    def makefile(self, mode: str = "rb") -> BinaryIO: ...
    def sendall(self, data: bytes) -> None: ...
    def recv_stderr_ready(self) -> bool: ...
    def recv_stderr(self, n: int) -> bytes: ...
    def close(self) -> None: ...


class _Labelled(Protocol):
    label: str


class ChannelOpener(Protocol):
    """What opens the bridge: podtui.ssh.connection.SshConnection (an exec channel over a verified
    connection) or podtui.agent.local_bridge.LocalBridge (a local subprocess)."""

    @property
    def target(self) -> _Labelled: ...

    def open_exec(self, command: str, timeout: float = 10.0) -> Channel: ...


def logs_tail_params(n: int, *, follow: bool, source: str = "all") -> dict:
    """The `logs.tail` request's params: the last `n` lines (n >= 0) of `source` ("engine",
    "agent" or "all"), then new ones while `follow`. The one place they are built."""
    return {"n": max(0, int(n)), "follow": follow, "source": source}


class AgentError(PodtuiError):
    """The agent answered a request with an error; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str, fix: str = "") -> None:
        super().__init__(f"agent: {message} ({code})", fix)
        self.code = code
        self.message = message


class AgentUnavailable(PodtuiError):
    """The bridge command did not greet: the daemon is not running, or the command is wrong."""


class AgentClient:
    """One conversation with remote-agent on one channel; several requests may share it.

    `open()` starts the bridge and waits for the greeting; `call()` and `stream()` send requests.
    Errors: AgentUnavailable (no greeting, wrong protocol, the channel closed), AgentError (the
    agent refused a request, or `call` timed out: code "timeout"). Opening over SSH may also raise
    what the connection raises (podtui.errors.HostKeyNotVerified, CannotConnect).
    """

    def __init__(self, connection: ChannelOpener, command: str = DEFAULT_AGENT_COMMAND,
                 hello_timeout: float = 15.0) -> None:
        self.connection = connection
        self.command = command
        self.hello_timeout = hello_timeout
        self.hello: dict | None = None
        self._channel = None
        self._ids = itertools.count(1)
        self._waiting: dict[Any, queue.Queue] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._greeting: queue.Queue = queue.Queue()

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> dict:
        """Start the bridge and return the agent's greeting
        (`{"hello": "remote-agent", "protocol": 1, "version": …}`), waiting at most hello_timeout
        seconds. Raises AgentUnavailable when it does not greet or speaks another protocol."""
        self._channel = self.connection.open_exec(self.command)
        threading.Thread(target=self._read_loop, daemon=True, name="podtui-agent-reader").start()
        try:
            hello = self._greeting.get(timeout=self.hello_timeout)
        except queue.Empty:
            hello = None
        if not isinstance(hello, dict) or hello.get("hello") != "remote-agent":
            # The bridge's own words (e.g. "the agent daemon is not running") come on stderr, just
            # before its exit status: wait briefly for that status so they are not lost to a race.
            status_event = getattr(self._channel, "status_event", None)
            if status_event is not None:
                status_event.wait(2.0)
            raise AgentUnavailable(
                f"`{self.command}` on {self.connection.target.label} did not greet as remote-agent"
                + _colon(self._stderr_tail()),
                "start the daemon in the pod (`remote-agent daemon`), or set the bridge command with "
                "--agent-command / PODTUI_AGENT_COMMAND",
            )
        if hello.get("protocol") != protocol.PROTOCOL_VERSION:
            raise AgentUnavailable(
                f"the agent speaks protocol {hello.get('protocol')}, podtui speaks {protocol.PROTOCOL_VERSION}",
                "update podtui or the pod's image so both match")
        self.hello = hello
        return hello

    def close(self) -> None:
        """Close the channel (the bridge exits; pending requests get AgentUnavailable)."""
        if self._channel is not None:
            self._channel.close()

    def __enter__(self) -> "AgentClient":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------
    def call(self, method: str, params: dict | None = None,
             on_event: Callable[[str, dict], None] | None = None, timeout: float | None = 120.0) -> Any:
        """Send one request and return its result (the JSON value the agent answered: a dict for
        status/engine.*, a list for models.list). Stream events, if any, go to
        on_event(kind, data) on this thread as they arrive. timeout: seconds to wait for each
        message; None waits as long as the agent works (a swap may download for minutes).
        Raises AgentError (the agent's error, or code "timeout") or AgentUnavailable."""
        request_id, inbox = self._send_request(method, params)
        try:
            while True:
                message = self._next(inbox, timeout, method)
                if "event" in message:
                    if on_event:
                        on_event(message["event"], message.get("data") or {})
                    continue
                return self._result_of(message)
        finally:
            self._forget(request_id)

    def call_if_known(self, method: str, timeout: float | None = 120.0) -> Any:
        """call(method), or None when the agent is older than the method (it answers unknown_method).
        Raises AgentError for any other refusal, AgentUnavailable."""
        try:
            return self.call(method, timeout=timeout)
        except AgentError as exc:
            if exc.code == protocol.UNKNOWN_METHOD:
                return None
            raise

    def stream(self, method: str, params: dict | None = None) -> Iterator[tuple[str, dict]]:
        """Events of a long request (logs follow) as (kind, data) tuples; closing the iterator
        cancels it. The final result ends the iteration; an error result raises AgentError."""
        request_id, inbox = self._send_request(method, params)
        finished = False
        try:
            while True:
                message = self._next(inbox, None, method)
                if "event" in message:
                    yield message["event"], message.get("data") or {}
                    continue
                finished = True
                self._result_of(message)
                return
        finally:
            if not finished:
                self.cancel(request_id)
                self._drain_until_final(inbox)
            self._forget(request_id)

    def logs(self, n: int, *, follow: bool, source: str = "all") -> Iterator[tuple[str, dict]]:
        """`logs.tail` as a stream (see stream()): "log" events carry {line, ts, source}."""
        return self.stream("logs.tail", logs_tail_params(n, follow=follow, source=source))

    def cancel(self, request_id: Any) -> None:
        """Ask the agent to stop request `request_id` (a follow); its final answer still comes."""
        self._send({"method": "cancel", "params": {"id": request_id}})

    # -- internals ---------------------------------------------------------------------------
    def _send_request(self, method: str, params: dict | None) -> tuple[int, queue.Queue]:
        if self._channel is None:
            self.open()
        request_id = next(self._ids)
        inbox: queue.Queue = queue.Queue()
        with self._lock:
            self._waiting[request_id] = inbox
        self._send({"id": request_id, "method": method, "params": params or {}})
        return request_id, inbox

    def _send(self, message: dict) -> None:
        with self._send_lock:
            try:
                self._channel.sendall(protocol.encode(message))
            except OSError as exc:
                raise AgentUnavailable(f"the agent channel closed: {exc}", "run the command again") from None

    def _next(self, inbox: queue.Queue, timeout: float | None, method: str) -> dict:
        try:
            message = inbox.get(timeout=timeout)
        except queue.Empty:
            raise AgentError("timeout", f"no answer to {method} within {timeout:.0f} s",
                             "check the agent's log (`podtui agent TARGET logs`)") from None
        if message is _CLOSED:
            raise AgentUnavailable(f"the agent channel closed during {method}"
                                   + _colon(self._stderr_tail()),
                                   "check that the daemon is still running in the pod")
        return message

    @staticmethod
    def _result_of(message: dict) -> Any:
        if "error" in message:
            error = message["error"] or {}
            raise AgentError(str(error.get("code", "error")), str(error.get("message", "failed")))
        return message.get("result")

    def _drain_until_final(self, inbox: queue.Queue, timeout: float = 5.0) -> None:
        try:
            while True:
                message = inbox.get(timeout=timeout)
                if message is _CLOSED or "event" not in message:
                    return
        except queue.Empty:
            return

    def _forget(self, request_id: Any) -> None:
        with self._lock:
            self._waiting.pop(request_id, None)

    def _read_loop(self) -> None:
        reader = self._channel.makefile("rb")
        try:
            for line in reader:
                try:
                    message = protocol.decode_line(line)
                except protocol.ProtocolError:
                    continue  # a stray non-JSON line (a shell banner) is not ours to answer
                if "hello" in message:
                    self._greeting.put(message)
                    continue
                with self._lock:
                    inbox = self._waiting.get(message.get("id"))
                if inbox is not None:
                    inbox.put(message)
        except OSError:
            pass
        finally:
            self._greeting.put(None)
            with self._lock:
                inboxes = list(self._waiting.values())
            for inbox in inboxes:
                inbox.put(_CLOSED)

    def _stderr_tail(self) -> str:
        channel = self._channel
        if channel is None or not channel.recv_stderr_ready():
            return ""
        return channel.recv_stderr(4096).decode(errors="replace").strip()[-400:]


def _colon(text: str) -> str:
    """`: <text>` or nothing (the stderr tail is read once: reading consumes it)."""
    return f": {text}" if text else ""

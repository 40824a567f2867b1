"""RPC clusters (issue 18): link a server pod to its backends over SSH links its agent owns.

`link_cluster` talks to every member's agent over podtui's own verified channel (sessions.py:
pinned host keys, nothing trusted on first use) and:
1. reads each status: the server must be APP_MODE=server, the backends APP_MODE=backend, and every
   pod must run the same llama.cpp build (RPC.md fact 13: another build aborts llama-server);
2. makes a key pair for the cluster, in memory only: the public half goes to each backend's agent
   (`cluster.authorize`, limited there to forwarding its RPC port), the private half to the server's
   agent inside `cluster.link`, with the backends' verified pins as a known_hosts file. podtui never
   writes the private key to disk;
3. maps the server's APP_RPC_BACKENDS entries (127.0.0.1:PORT, in order) to the backends, in the
   order given, and waits for the links to be up.
With direct=True (a Runpod Instant Cluster's overlay) no link is made: the server reaches the
backends' ggml-rpc-server on their overlay address, which trusts every pod on the overlay (Runpod
says only the account's cluster members share it, RPC.md §5.2) with an unauthenticated RPC port.
Clusters are remembered in podtui's config dir (clusters.json: names and members, no secrets).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from podtui import paths
from podtui.agent.client import AgentClient
from podtui.errors import PodtuiError, UsageProblem
from podtui.services import sessions
from podtui.services.cluster_records import (  # noqa: F401 (services.cluster is where callers look them up)
    clusters_file,
    find_cluster,
    forget_cluster,
    load_clusters,
    save_cluster,
    update_cluster,
)
from podtui.services.sessions import SessionTarget
from podtui.ssh.connection import ConnectOptions
from podtui.ssh.known_hosts import KnownHosts

Progress = Callable[[str, str], None]
LINK_WAIT_S = 30


class ClusterProblem(PodtuiError):
    """The pods cannot form this cluster (role, build, endpoints, pins); the fix says what to change."""


@dataclass
class Member:
    """One pod of the cluster as TARGET named it, its session, its agent and its status."""
    ref: str
    session: SessionTarget
    client: AgentClient | None = None
    status: dict | None = None

    @property
    def cluster(self) -> dict:
        return (self.status or {}).get("cluster") or {}


def cluster_key(comment: str = "podtui-cluster") -> tuple[str, str]:
    """A new Ed25519 key pair: (OpenSSH private key text, `ssh-ed25519 AAAA… comment`). In memory only."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}"


def check_members(server: Member, backends: list[Member], direct: bool,
                  binds: dict[str, str] | None = None) -> list[str]:
    """The RPC endpoints the server is to use once roles, builds and counts agree: with links its
    APP_RPC_BACKENDS (where the links listen, in order); direct, each backend's own `bind:port`, in the
    order given (binds: ref → the address it must bind, an Instant Cluster's PodCluster.ip).
    Raises ClusterProblem naming the pod and the fix."""
    if server.cluster.get("role") != "server":
        raise ClusterProblem(f"{server.ref} is not an RPC server (its role is {server.status.get('role')})",
                             "start it with APP_MODE=server and APP_RPC_BACKENDS=127.0.0.1:60151,… (one per backend)")
    for backend in backends:
        if backend.cluster.get("role") != "backend":
            raise ClusterProblem(f"{backend.ref} is not an RPC backend (its role is {backend.status.get('role')})",
                                 "start it with APP_MODE=backend")
    builds = {m.ref: m.cluster.get("build") for m in (server, *backends)}
    if None in builds.values() or len(set(builds.values())) != 1:
        listing = "; ".join(f"{ref}: {build or 'unknown'}" for ref, build in builds.items())
        raise ClusterProblem(f"the pods run different llama.cpp builds ({listing}); llama-server aborts on a backend "
                             "of another RPC protocol", "run the same image (the same llama.cpp build) on every pod")
    endpoints = [b["endpoint"] for b in server.cluster.get("backends") or []]
    if len(endpoints) != len(backends):
        raise ClusterProblem(f"{server.ref} expects {len(endpoints)} backend(s) (APP_RPC_BACKENDS), "
                             f"{len(backends)} given", "name one BACKEND per APP_RPC_BACKENDS entry, in its order")
    if not direct and any(not e.startswith("127.0.0.1:") for e in endpoints):
        raise ClusterProblem(f"{server.ref}'s APP_RPC_BACKENDS ({','.join(endpoints)}) are not on its loopback, "
                             "where links listen", "set APP_RPC_BACKENDS=127.0.0.1:60151,127.0.0.1:60152,… "
                             "or use --direct on an Instant Cluster's overlay")
    if direct:
        for backend in backends:
            bind, want = backend.cluster.get("bind"), (binds or {}).get(backend.ref)
            if want and bind != want:
                raise ClusterProblem(f"{backend.ref} binds {bind}, not its overlay address {want}",
                                     "launch with --direct (APP_BIND=NODE_ADDR), or without it for SSH links")
        return [f"{b.cluster.get('bind')}:{b.cluster.get('port')}" for b in backends]
    return endpoints


def backend_budgets(backends: list[Member]) -> list[int] | None:
    """The backends' APP_MEM as the server's fit budgets, one per RPC device in --rpc order: each backend's
    status.cluster.memory_budgets_mib (one per device it lends, APP_MEM=20000,20000), else its single
    memory_budget_mib. None (the server fits to free memory) when some backend set no APP_MEM. Raises
    ClusterProblem when a backend's budgets do not match the devices it reports (the agent can check the
    count only when ARGS names them with -d; a backend whose ggml-rpc-server has not listed them yet is
    not checked)."""
    budgets: list[int] = []
    for backend in backends:
        info = backend.cluster
        mine = info.get("memory_budgets_mib") or ([info["memory_budget_mib"]] if info.get("memory_budget_mib") else [])
        if not mine:
            return None
        devices = [d.get("name") for d in info.get("devices") or []]
        if devices and len(mine) != len(devices):   # none listed yet: ggml-rpc-server has not printed them
            raise ClusterProblem(f"{backend.ref} sets APP_MEM={','.join(map(str, mine))} ({len(mine)} budget(s)) "
                                 f"but lends {len(devices)} device(s) ({', '.join(map(str, devices)) or 'none'})",
                                 "give one MiB budget per device, in its order: APP_MEM="
                                 + ",".join([str(mine[0])] * max(1, len(devices))) + " (or unset APP_MEM)")
        budgets.extend(mine)
    return budgets


def _alias(index: int, ref: str) -> str:
    return f"podtui-rpc-{index}-" + re.sub(r"[^A-Za-z0-9.-]", "-", ref)[:40]


def pinned_line(backend: Member, alias: str, known_hosts: KnownHosts) -> str:
    """known_hosts lines naming alias with the backend's verified pins. Raises ClusterProblem
    when there is none (an unverified pin is not passed on: the server would trust it blindly)."""
    pins = [pin for pin in known_hosts.pins_for(backend.session.ssh.alias) if pin.verified]
    if not pins:
        raise ClusterProblem(f"{backend.ref}'s host key is not pinned as verified",
                             f"verify it first: podtui hostkey {backend.ref} --pin SHA256:… (from the pod's log)")
    return "".join(f"{alias} {pin.key.key_type} {pin.key.base64}\n" for pin in pins)


def link_specs(backends: list[Member], endpoints: list[str], reach: dict[str, str],
               known_hosts: KnownHosts) -> tuple[list[dict], str]:
    """cluster.link's links and known_hosts: each backend's sshd as the server pod reaches it
    (reach[ref] "host:port", else the address podtui uses) under its pin's alias."""
    links, lines = [], ""
    for index, (backend, endpoint) in enumerate(zip(backends, endpoints)):
        target = backend.session.ssh
        host, port = target.host, target.port
        if backend.ref in reach:
            host, _, port_text = reach[backend.ref].rpartition(":")
            port = int(port_text)
        alias = _alias(index, backend.ref)
        lines += pinned_line(backend, alias, known_hosts)
        links.append({"name": re.sub(r"[^A-Za-z0-9._@-]", "-", backend.ref)[:64], "endpoint": endpoint,
                      "host": host, "port": port, "user": target.user,
                      "rpc_port": int(backend.cluster.get("port") or 50052), "host_key_alias": alias})
    return links, lines


def link_cluster(server_ref: str, backend_refs: list[str], *, name: str | None = None, reach: dict[str, str] | None = None,
                 direct: bool = False, options: ConnectOptions | None = None, progress: Progress = lambda *a: None,
                 resolve: Callable[[str], SessionTarget] | None = None, extra: dict | None = None,
                 binds: dict[str, str] | None = None) -> dict:
    """Link SERVER to BACKENDs (see the module docstring). Returns {"name", "server", "backends",
    "links": [the server's link snapshots], "direct"} plus extra (kept in the record too: an Instant
    Cluster's "kind" and "cluster_id"). Raises ClusterProblem, UsageProblem, HostKeyNotVerified,
    CannotConnect, AgentError."""
    if not backend_refs:
        raise UsageProblem("no BACKEND given", "name each backend pod after the server: cluster link SERVER B1 B2")
    reach = reach or {}
    resolve = resolve or sessions.resolve_session_target
    known_hosts = KnownHosts(paths.known_hosts_file())
    members = [Member(ref, resolve(ref)) for ref in (server_ref, *backend_refs)]
    for member in members[1:]:
        if member.session.ssh is None and not direct:
            raise UsageProblem(f"{member.ref} has no SSH address to link to", "use pods reachable over SSH")
    with ExitStack() as stack:
        for member in members:
            progress("status", f"asking {member.ref}'s agent for its status")
            member.client = stack.enter_context(sessions.agent_session(member.session, known_hosts, options=options))
            member.status = member.client.call("status", timeout=30)
        server, backends = members[0], members[1:]
        endpoints = check_members(server, backends, direct, binds)
        links: list[dict] = []
        if direct:   # no links: the server gets the backends' own addresses (and APP_MEM) over this channel
            if server.cluster.get("links"):   # linked before: those links and their key go
                progress("unlink", f"stopping {server.ref}'s links and removing the cluster key from the backends")
                server.client.call("cluster.unlink", {}, timeout=30)
                for backend in backends:
                    backend.client.call("cluster.authorize", {}, timeout=30)
            budgets = backend_budgets(backends)
            progress("direct", f"pointing {server.ref}'s llama-server at {','.join(endpoints)} (no links)")
            server.client.call("cluster.direct", {"endpoints": endpoints,
                                                  **({"budgets_mib": budgets} if budgets else {})}, timeout=60)
        else:
            specs, lines = link_specs(backends, endpoints, reach, known_hosts)
            private, public = cluster_key(f"podtui-cluster-{name or server_ref}")
            for backend in backends:
                progress("authorize", f"authorizing the cluster key on {backend.ref} (its RPC port only)")
                backend.client.call("cluster.authorize", {"public_key": public}, timeout=30)
            progress("link", f"starting {len(specs)} link(s) on {server.ref}")
            budgets = backend_budgets(backends)   # one per RPC device, in link order
            answer = server.client.call("cluster.link", {"links": specs, "known_hosts": lines,
                                                         "private_key": private, "wait_s": LINK_WAIT_S,
                                                         **({"budgets_mib": budgets} if budgets else {})},
                                        timeout=LINK_WAIT_S + 30)
            links = answer["links"]
    record = {"name": name or server_ref, "server": server_ref, "backends": list(backend_refs), "direct": direct,
              "reach": reach, **({"endpoints": endpoints} if direct else {}), "linked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(extra or {})}

    def relinked(old: dict | None) -> dict:
        # The same server linked again keeps what only the launch knew (an Instant Cluster's kind and
        # Runpod id, without which `cluster terminate` cannot delete it); another server starts afresh.
        kept = {k: old[k] for k in ("kind", "cluster_id") if k in old} if old and old.get("server") == server_ref else {}
        return {**kept, **record}
    record = update_cluster(record["name"], relinked)
    bad = [link for link in links if link["state"] != "up"]
    if bad:
        raise ClusterProblem("link(s) not up: " + "; ".join(f"{l['name']} {l['state']}: {l['last_error']}" for l in bad),
                             "check the backend pod (its sshd and host key), then `podtui cluster link` again")
    return {**record, "links": links}


def wait_for_agents(pod_ids: list[str], progress: Progress, timeout_s: float) -> None:
    """Until every pod's agent answers status (a new pod's agent may start after sshd), asking every 2 s
    for up to timeout_s s in all. Raises the last PodtuiError (CannotConnect, AgentError) after that."""
    deadline = time.monotonic() + timeout_s
    for pod_id in pod_ids:
        while True:
            try:
                with sessions.agent_session(sessions.resolve_session_target(pod_id), KnownHosts(paths.known_hosts_file())) as c:
                    c.call("status", timeout=30)
                break
            except PodtuiError as exc:
                if time.monotonic() > deadline:
                    raise
                progress("agent", f"waiting for {pod_id}'s agent: {exc.title}")
                time.sleep(2)


def cluster_status(name: str, *, options: ConnectOptions | None = None,
                   resolve: Callable[[str], SessionTarget] | None = None) -> dict:
    """{"name", "direct", "kind" ("pods" or "instant"), "cluster_id" (Runpod's, instant only), "server": {ref,
    state, links, backends, last_error, build, model, ctx}, "backends": [{ref, state, build, uptime_s, devices,
    memory_budget_mib, memory_budgets_mib (one per device), last_error}]}: every member's agent
    asked once; an unreachable one is reported, not raised. Raises ClusterProblem for an Instant Cluster
    whose launch stopped before its members were known."""
    record = find_cluster(name)
    if not record.get("server"):
        raise ClusterProblem(f"cluster {name} ({record.get('cluster_id')}) has no known members: its launch stopped "
                             "before they ran", f"delete it (podtui cluster terminate {name}) and launch again")
    resolve = resolve or sessions.resolve_session_target
    known_hosts = KnownHosts(paths.known_hosts_file())

    def ask(ref: str) -> dict:
        try:
            with sessions.agent_session(resolve(ref), known_hosts, options=options) as client:
                return client.call("status", timeout=30)
        except PodtuiError as exc:
            return {"state": "unreachable", "last_error": {"message": exc.title}}

    server = ask(record["server"])
    cluster = server.get("cluster") or {}
    out = {"name": record["name"], "direct": record.get("direct", False), "kind": record.get("kind", "pods"),
           "cluster_id": record.get("cluster_id"),
           "server": {"ref": record["server"], "state": server.get("state"), "links": cluster.get("links") or [],
                      "backends": cluster.get("backends") or [], "last_error": server.get("last_error"),
                      "build": cluster.get("build"), "model": server.get("model"), "ctx": server.get("ctx")},
           "backends": []}
    for ref in record.get("backends") or []:
        status = ask(ref)
        info = status.get("cluster") or {}
        out["backends"].append({"ref": ref, "state": status.get("state"), "build": info.get("build"),
                                "uptime_s": status.get("uptime_s"),
                                "devices": info.get("devices") or [], "memory_budget_mib": info.get("memory_budget_mib"),
                                "memory_budgets_mib": info.get("memory_budgets_mib") or [],
                                "last_error": status.get("last_error")})
    return out


def unlink_cluster(name: str, *, options: ConnectOptions | None = None,
                   resolve: Callable[[str], SessionTarget] | None = None) -> dict:
    """Stop the server's links and remove the cluster key from every backend (a --direct cluster: the
    server drops the overlay endpoints, back to APP_RPC_BACKENDS); forget the cluster (an Instant
    Cluster's record is kept, without links: `cluster terminate` still deletes it). Returns {"name",
    "unlinked": {ref: method}}. Raises UsageProblem (no such cluster), CannotConnect, AgentError."""
    record = find_cluster(name)
    resolve = resolve or sessions.resolve_session_target
    known_hosts = KnownHosts(paths.known_hosts_file())
    done = {}
    server = record.get("server")
    if record.get("direct"):   # no links: the server forgets the backends' overlay endpoints podtui gave it
        calls = [(server, "cluster.direct", {"endpoints": []})]
    else:
        calls = [(server, "cluster.unlink", {}), *((b, "cluster.authorize", {}) for b in record.get("backends") or [])]
    for ref, method, params in calls:
        if not ref:   # an Instant Cluster whose launch stopped before its members were known
            continue
        with sessions.agent_session(resolve(ref), known_hosts, options=options) as client:
            client.call(method, params, timeout=30)
            done[ref] = method
    if record.get("kind") == "instant":  # kept: its Runpod cluster id is how `cluster terminate` deletes it
        save_cluster({**record, "reach": {}, "linked_at": None})
    else:
        forget_cluster(name)
    return {"name": name, "unlinked": done}

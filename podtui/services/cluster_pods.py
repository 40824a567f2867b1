"""RPC clusters of Runpod pods (issue 18): launch the backends and the server as ordinary pods with
direct SSH, then link them (services/cluster.py); stop or terminate every member.

Each pod is launched as `podtui launch` launches one (PodService.launch: created through REST v2,
waited for until it runs with a public 22/tcp, its printed host keys read from its log and pinned as
verified), with seed 003's variables: backends APP_MODE=backend (APP_MEM when given), the server
APP_MODE=server, APP_RPC_BACKENDS=127.0.0.1:P,… (where its links will listen) and MODEL. Only 22/tcp
is published: the RPC port stays on each backend's loopback (RPC.md §5.2-5.4).
Instant Clusters (`POST /v2/clusters`) are launched by services/instant_cluster.py; stop and terminate
of one go there too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from podtui.errors import PodtuiError
from podtui.providers.base import PodSpec, Provider
from podtui.services import cluster as clusters
from podtui.services.pods import PodService

Progress = Callable[[str, str], None]
FIRST_LINK_PORT = 60151
AGENT_WAIT_S = 300.0


def member_specs(base: PodSpec, backends: int, name: str, app_mem: str | None,
                 first_link_port: int = FIRST_LINK_PORT) -> list[PodSpec]:
    """The backends' PodSpecs, then the server's (base gives GPU, image, volume, model, ctx)."""
    specs = []
    for index in range(backends):
        env = {**base.extra_env, "APP_MODE": "backend", **({"APP_MEM": str(app_mem)} if app_mem else {})}
        specs.append(replace(base, name=f"{name}-backend-{index + 1}", model="", ctx=None, extra_env=env,
                             hf_token=None))   # a backend downloads no model: HF_TOKEN goes to the server only
    endpoints = ",".join(f"127.0.0.1:{first_link_port + i}" for i in range(backends))
    specs.append(replace(base, name=f"{name}-server",
                         extra_env={**base.extra_env, "APP_MODE": "server", "APP_RPC_BACKENDS": endpoints}))
    return specs


def launch_cluster(provider: Provider, base: PodSpec, backends: int, *, name: str, app_mem: str | None = None,
                   first_link_port: int = FIRST_LINK_PORT, service: PodService | None = None,
                   progress: Progress = lambda *a: None, agent_wait_s: float = AGENT_WAIT_S) -> dict:
    """Launch the members one by one, then link them. Returns link_cluster's answer plus "pods" (ids
    in order: backends, server). Raises what PodService.launch raises (the pods made so far are
    named in the fix: they are billed), ClusterProblem, AgentError."""
    service = service or PodService(provider)
    made: list[str] = []
    try:
        for spec in member_specs(base, backends, name, app_mem, first_link_port):
            made.append(service.launch(spec, progress).pod.id)
        refs = made[:-1]
        clusters.wait_for_agents(made, progress, agent_wait_s)
        result = clusters.link_cluster(made[-1], refs, name=name, progress=progress)
    except PodtuiError as exc:
        if made:
            exc.fix = (f"{exc.fix}; pods {', '.join(made)} were created and are billed until you terminate "
                       f"them (podtui terminate POD)")
        raise
    return {**result, "pods": made}


def stop_or_terminate(provider: Provider, name: str, action: str) -> dict:
    """Stop (action "stop") or terminate ("terminate") every Runpod member of the cluster NAME, server
    first (so llama-server never aborts on a vanished backend mid-request). Members that are not
    Runpod pods (added SSH hosts) are left running and listed under "skipped". Terminate forgets
    the cluster. Returns {"name", action: [ids], "skipped": [refs]}. An Instant Cluster (kind "instant"):
    stop raises NoClusterStop (Runpod has none), terminate deletes the cluster (instant_cluster.py)."""
    record = clusters.find_cluster(name)
    if record.get("kind") == "instant":  # one Runpod object: no stop, DELETE terminates every member
        from podtui.services import instant_cluster
        if action == "stop":
            instant_cluster.stop_instant(record)
        return instant_cluster.terminate_instant(provider, record)
    done, skipped = [], []
    for ref in (record["server"], *record["backends"]):
        try:
            pod = provider.find_pod(ref)
        except PodtuiError:
            skipped.append(ref)
            continue
        (provider.stop_pod if action == "stop" else provider.terminate_pod)(pod.id)
        done.append(pod.id)
    if action == "terminate":
        clusters.forget_cluster(name)
    return {"name": name, action: done, "skipped": skipped}

"""`podtui cluster link|status|list|unlink`: llama.cpp RPC clusters (issue 18) linked over verified SSH."""

from __future__ import annotations

import json
from pathlib import Path

import click

from podtui.commands.ssh_options import say_progress
from podtui.errors import PodtuiError, UsageProblem
from podtui.services import cluster as clusters
from podtui.services import sessions
from podtui.ssh.identities import terminal_prompt


def _options(identity: Path | None, connect_timeout: float):
    return sessions.connect_options(identity, connect_timeout, ask_passphrase=terminal_prompt())


def _reach(values: tuple[str, ...]) -> dict[str, str]:
    reach = {}
    for value in values:
        ref, sep, address = value.partition("=")
        host, colon, port = address.rpartition(":")
        if not sep or not colon or not host or not port.isdigit():
            raise UsageProblem(f"--reach {value!r} is not BACKEND=HOST:PORT",
                               "e.g. --reach b1=10.65.0.3:22 (the backend's sshd as the server pod reaches it)")
        reach[ref] = address
    return reach


@click.group()
def cluster() -> None:
    """llama.cpp RPC clusters: one model across a server pod and its backend pods.

    The server pod runs APP_MODE=server with APP_RPC_BACKENDS=127.0.0.1:60151,… (one entry per
    backend); each backend runs APP_MODE=backend. `cluster link` joins them with SSH links that the
    server's agent owns and supervises, checked against the host keys podtui pinned as verified.
    `cluster launch` makes such pods on Runpod, or with --instant one Runpod Instant Cluster whose
    members all run APP_MODE=rank (NODE_RANK 0 serves, the others are backends).
    """


@cluster.command()
@click.argument("server")
@click.argument("backends", nargs=-1)
@click.option("--name", default=None, help="What to call the cluster (default: SERVER).")
@click.option("--reach", multiple=True, metavar="BACKEND=HOST:PORT",
              help="The backend's sshd as the server pod reaches it, when not the address podtui uses; repeatable.")
@click.option("--direct", is_flag=True,
              help="No links: the server reaches the backends' RPC port directly (a Runpod Instant Cluster's "
                   "overlay, APP_BIND=NODE_ADDR). Trusts every pod on that overlay: ggml-rpc-server has no auth.")
@click.option("-i", "--identity", type=click.Path(path_type=Path), default=None,
              help="Private key podtui logs in with (default: ssh-agent, then ~/.ssh/id_*; added hosts use theirs).")
@click.option("--connect-timeout", type=float, default=10.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object; progress as JSON lines on stderr.")
def link(server: str, backends: tuple[str, ...], name: str | None, reach: tuple[str, ...], direct: bool,
         identity: Path | None, connect_timeout: float, as_json: bool) -> None:
    """Link SERVER to BACKENDS (pods, added SSH hosts or SSH addresses running remote-agent), in the
    order of the server's APP_RPC_BACKENDS.

    Refuses pods of different llama.cpp builds and backends whose host key is not pinned as verified.
    A key pair is made for the cluster: its public half is authorized on each backend for its RPC
    port only, its private half goes to the server's agent over the verified channel and nowhere else.
    Exit 3 when a host key is not verified, 4 when a pod cannot be reached, 1 when the pods do not fit.
    """
    result = clusters.link_cluster(server, list(backends), name=name, reach=_reach(reach), direct=direct,
                                   options=_options(identity, connect_timeout),
                                   progress=say_progress)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"cluster {result['name']}: server {server}, backends {', '.join(backends)}"
               + (" (direct, no links)" if direct else ""))
    for item in result["links"]:
        click.echo(f"  link {item['name']}  {item['endpoint']} → {item['backend']} (rpc {item['rpc_port']})  "
                   f"{item['state']}")


@cluster.command(name="list")
@click.option("--json", "as_json", is_flag=True)
def list_clusters(as_json: bool) -> None:
    """The clusters podtui linked or launched, and the account's Runpod Instant Clusters (`GET /v2/clusters`,
    when a Runpod API key is configured; no pod is contacted)."""
    known = clusters.load_clusters()
    runpod, note = [], None
    try:
        from podtui.services.instant_cluster import runpod_clusters
        runpod = runpod_clusters(_provider())
    except PodtuiError as exc:
        note = f"Runpod's Instant Clusters not listed: {exc.title}"
    mine = {record.get("cluster_id") for record in known.values()}
    others = [c for c in runpod if c["id"] not in mine]
    by_id = {c["id"]: c for c in runpod}
    if as_json:
        records = [{**r, **({"runpod": by_id[r["cluster_id"]]} if r.get("cluster_id") in by_id else {})}
                   for r in known.values()]
        click.echo(json.dumps({"clusters": records, "runpod_clusters": others, **({"note": note} if note else {})}))
        return
    if note:
        say_progress("list", note)
    if not known and not others:
        click.echo("no clusters (link one with `podtui cluster link SERVER BACKEND…`)")
    for record in known.values():
        kind = ""
        if record.get("kind") == "instant":
            live = by_id.get(record.get("cluster_id"))
            if live:
                state = ", ".join(f"{n} {s}" for s, n in live["by_status"].items())
            else:   # with no answer from Runpod nothing is known: never say it is gone (and no longer billed)
                state = "Runpod not asked" if note else "not on Runpod"
            kind = f"  instant {record['cluster_id']} ({state})"
        click.echo(f"{record['name']}  server {record.get('server') or '-'}  backends "
                   f"{', '.join(record.get('backends') or []) or '-'}{'  direct' if record.get('direct') else ''}{kind}")
    for other in others:
        click.echo(f"{other['name']}  instant {other['id']}, {other['pod_count']} pods of {other['gpu']} "
                   "(not launched by podtui)")


@cluster.command()
@click.argument("name")
@click.option("--connect-timeout", type=float, default=10.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def status(name: str, connect_timeout: float, as_json: bool) -> None:
    """NAME's server (state, each link, each backend's handshake) and backends (state, build, devices)."""
    result = clusters.cluster_status(name, options=_options(None, connect_timeout))
    if as_json:
        click.echo(json.dumps(result))
        return
    s = result["server"]
    click.echo(f"cluster {name}: server {s['ref']} {s['state']}  ({s['build']})")
    if s.get("last_error"):
        click.echo(f"  last error: {s['last_error'].get('kind') or ''} {s['last_error'].get('message')}".rstrip())
    for entry in s.get("backends") or []:
        # a ggml-rpc-server that restarted within a second answers the handshake again: its link saw it
        if entry.get("backend_restarted_s_ago") is not None:
            click.echo(f"  backend {entry.get('link') or entry.get('endpoint')}: its ggml-rpc-server restarted "
                       f"{entry['backend_restarted_s_ago']:.0f} s ago (an abort of llama-server then was this one)")
    for item in s["links"]:
        error = f"  {item['last_error']}" if item.get("last_error") and item["state"] != "up" else ""
        click.echo(f"  link {item['name']}  {item['endpoint']} → {item['backend']}  {item['state']} "
                   f"for {item['for_s']} s, {item['restarts']} restart(s){error}")
    for backend in result["backends"]:
        devices = ", ".join(f"{d.get('name')} {d.get('free_mib')}/{d.get('total_mib')} MiB" for d in backend["devices"])
        click.echo(f"  backend {backend['ref']}  {backend['state']}  {devices}")


@cluster.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def unlink(name: str, as_json: bool) -> None:
    """Stop NAME's links, remove the cluster key from its backends and forget it (pods keep running).

    A --direct cluster's server drops the backends' overlay endpoints (back to its APP_RPC_BACKENDS).
    An Instant Cluster stays remembered, so that `cluster terminate NAME` can still delete it."""
    result = clusters.unlink_cluster(name)
    if as_json:
        click.echo(json.dumps(result))
        return
    told = ", ".join(f"{ref} ({method})" for ref, method in result["unlinked"].items()) or "no member was asked"
    click.echo(f"unlinked {name}: {told}")


def _check_launch_flags(instant: bool, direct: bool, gpu_count: int, first_link_port: int, cloud: str,
                        overlay_ssh_port: int) -> None:
    """Refuse, before anything is created and billed, the flags that do not apply to this kind of launch."""
    if direct and not instant:
        raise UsageProblem("--direct needs --instant", "ordinary pods have no private overlay: drop --direct "
                           "(SSH links), or add --instant")
    if gpu_count != 1 and not instant:
        raise UsageProblem("--gpu-count is for --instant", "drop it, or add --instant")
    if overlay_ssh_port != 22 and (not instant or direct):
        raise UsageProblem("--overlay-ssh-port is for --instant with SSH links", "drop it (or drop --direct)")
    if instant and first_link_port != 60151:
        raise UsageProblem("--first-link-port is not for --instant: every member gets one env, in which rank 0's "
                           "links listen on 127.0.0.1:60151,…", "drop --first-link-port")
    if instant and cloud != "SECURE":
        raise UsageProblem("--cloud is not for --instant: a cluster request names no cloud", "drop --cloud")


def _app_mem(value: str | None, gpu_count: int) -> str | None:
    """--app-mem as APP_MEM ("20000" or "20000,20000"); UsageProblem unless one positive MiB per GPU."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UsageProblem(f"--app-mem {value!r} is not MiB", "e.g. --app-mem 20000, one number per GPU of a pod")
    if len(parts) != gpu_count:
        raise UsageProblem(f"--app-mem gives {len(parts)} budget(s) for {gpu_count} GPU(s) per pod: one number could "
                           "mean per GPU or in total", "give one MiB budget per GPU, e.g. --app-mem "
                           + ",".join([parts[0]] * gpu_count))
    return ",".join(parts)


def _provider():
    from podtui.services.providers import open_runpod
    return open_runpod(on_wait=lambda note: say_progress("wait", note))


@cluster.command()
@click.option("--backends", "backend_count", type=click.IntRange(1, 15), required=True,
              help="How many backend pods (llama.cpp takes at most 15).")
@click.option("--gpu", required=True, metavar="GPU_ID", help="Runpod GPU type id for every pod, e.g. 'NVIDIA A40'.")
@click.option("--gpu-count", type=click.IntRange(1, 16), default=1, show_default=True,
              help="GPUs per pod (--instant only: every member has the same).")
@click.option("--model", required=True, help="MODEL for the server (it alone needs the GGUF file).")
@click.option("--ctx", default=None, help="CTX: a number, or auto (the largest that fits every device).")
@click.option("--name", default="cluster", show_default=True, help="Cluster name; ordinary pods are NAME-server, NAME-backend-N (Runpod names an Instant Cluster's).")
@click.option("--app-mem", default=None, metavar="MIB[,MIB…]",
              help="APP_MEM: MiB each backend offers, one number per device it lends (e.g. 70000,70000 with "
                   "--gpu-count 2); the server's fit keeps within them.")
@click.option("--instant", is_flag=True,
              help="One Runpod Instant Cluster (POST /v2/clusters) of N+1 identical pods on a private overlay, "
                   "with one env (APP_MODE=rank: rank 0 serves, the others are backends), instead of N+1 pods.")
@click.option("--direct", is_flag=True,
              help="--instant only: no SSH links; each backend's ggml-rpc-server binds its overlay address "
                   "(APP_BIND=NODE_ADDR) and the server reaches it there. Trusts every pod on the overlay: "
                   "ggml-rpc-server has no authentication and whoever reaches its port can run code in the pod; "
                   "the traffic is not encrypted.")
@click.option("--overlay-ssh-port", type=click.IntRange(1, 65535), default=22, show_default=True,
              help="--instant, with links: the port the members' sshd listens on inside the pod, which the "
                   "server reaches over the overlay (the image's REMOTE_AGENT_SSHD_PORT).")
@click.option("--with-hf-token", is_flag=True,
              help="Pass HF_TOKEN from this environment (never from the command line) for a gated or private "
                   "MODEL: to the server pod only, or with --instant to every member (one env for all).")
@click.option("--image", default=None, help="Image (default: podtui's pinned image, the same on every pod).")
@click.option("--volume-gb", type=click.IntRange(10, 100000), default=50, show_default=True)
@click.option("--cloud", type=click.Choice(["SECURE", "COMMUNITY"]), default="SECURE", show_default=True,
              help="Not with --instant: a cluster request has no cloud (Runpod places it in one data centre).")
@click.option("--first-link-port", type=click.IntRange(1024, 65000), default=60151, show_default=True,
              help="The server's link ports start here (APP_RPC_BACKENDS=127.0.0.1:PORT,…); not with --instant.")
@click.option("--wait-timeout", type=float, default=900, show_default=True, help="Seconds for each pod to run.")
@click.option("--log-timeout", type=float, default=300, show_default=True,
              help="Seconds for each pod's printed host keys.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object; progress as JSON lines on stderr.")
def launch(backend_count: int, gpu: str, gpu_count: int, model: str, ctx: str | None, name: str, app_mem: str | None,
           instant: bool, direct: bool, overlay_ssh_port: int, with_hf_token: bool, image: str | None, volume_gb: int,
           cloud: str, first_link_port: int, wait_timeout: float, log_timeout: float, as_json: bool) -> None:
    """Launch a cluster on Runpod and link it (as `cluster link`), billed until terminated.

    \b
    Default: --backends N backend pods and one server pod, each with direct SSH and its host keys
    pinned from its log.
    --instant: one Instant Cluster of N+1 pods (Runpod's `/v2/clusters`; its list price for the whole
    cluster is shown first). Every member's host keys are pinned from its own log; the server then
    links to each backend over the cluster's private overlay (SSH, pinned keys), or with --direct
    reaches their RPC port there without links. Runpod has no stop for a cluster: `cluster terminate`
    deletes it and every member.
    """
    import os

    from podtui.providers.base import PodSpec
    from podtui.services.inputs import ctx_option, hf_token_option, model_problem
    from podtui.services.pods import PodService

    if problem := model_problem(model):
        raise UsageProblem(f"--model: {problem}", "fix MODEL before any pod is created and billed")
    _check_launch_flags(instant, direct, gpu_count, first_link_port, cloud, overlay_ssh_port)
    app_mem = _app_mem(app_mem, gpu_count)
    hf_token = hf_token_option(with_hf_token)
    if name in clusters.load_clusters():
        raise UsageProblem(f"a cluster named {name!r} is already known", "pick another --name, or terminate or "
                           f"unlink that one first (podtui cluster terminate {name})")
    ctx_value = ctx_option(ctx)
    base = PodSpec(gpu=gpu, model=model, name=name, ctx=None if ctx_value is None else str(ctx_value),
                   volume_gb=volume_gb, image=image or "", cloud=cloud, gpu_count=gpu_count, hf_token=hf_token)
    provider = _provider()
    service = PodService(provider, wait_timeout_s=wait_timeout, block_timeout_s=log_timeout,
                         poll_s=float(os.environ.get("PODTUI_POLL_S") or 5.0))
    if instant:
        from podtui.services.instant_cluster import launch_instant
        result = launch_instant(provider, base, backend_count, name=name, app_mem=app_mem, direct=direct,
                                overlay_ssh_port=overlay_ssh_port, service=service, progress=say_progress)
    else:
        from podtui.services.cluster_pods import launch_cluster
        result = launch_cluster(provider, base, backend_count, name=name, app_mem=app_mem,
                                first_link_port=first_link_port, service=service, progress=say_progress)
    if as_json:
        click.echo(json.dumps(result))
        return
    kind = f" (Instant Cluster {result['cluster_id']})" if instant else ""
    click.echo(f"cluster {name}{kind}: server {result['server']}, backends {', '.join(result['backends'])}")
    if instant and result.get("price_per_hr") is not None:
        click.echo(f"  price      ${result['price_per_hr']:.2f}/hr for the whole cluster (catalog list price)")
    for item in result["links"]:
        click.echo(f"  link {item['name']}  {item['endpoint']} → {item['backend']}  {item['state']}")
    if direct:
        click.echo(f"  direct     {', '.join(result.get('endpoints') or [])} over the overlay (no links)")
    click.echo(f"  next       podtui tunnel {result['server']}")


def _members_verb(action: str, doc: str):
    @cluster.command(name=action, help=doc)
    @click.argument("name")
    @click.option("--yes", is_flag=True, hidden=action != "terminate", help="Do not ask for confirmation.")
    @click.option("--json", "as_json", is_flag=True)
    def verb(name: str, yes: bool, as_json: bool) -> None:
        from podtui.services.cluster_pods import stop_or_terminate

        record = clusters.find_cluster(name)
        if action == "stop" and record.get("kind") == "instant":   # says so without a Runpod key too
            from podtui.services.instant_cluster import stop_instant
            stop_instant(record)
        if action == "terminate" and not yes:
            members = ", ".join(m for m in [record.get("server"), *record.get("backends", [])] if m) or "none known"
            what = (f"Delete Instant Cluster {name} ({record['cluster_id']}) and terminate every member ({members})"
                    if record.get("kind") == "instant" else f"Terminate every pod of cluster {name} ({members})")
            if not click.confirm(f"{what}? Their volumes go too",
                                 default=False, err=True):
                raise UsageProblem(f"cluster {name} was not terminated", "answer y, or pass --yes")
        result = stop_or_terminate(_provider(), name, action)
        if as_json:
            click.echo(json.dumps(result))
            return
        click.echo(f"cluster {name}: {action} {', '.join(result[action]) or 'no Runpod pod'}"
                   + (f"; not Runpod pods, left running: {', '.join(result['skipped'])}" if result["skipped"] else ""))
    return verb


_members_verb("stop", "Stop every Runpod pod of cluster NAME (server first); volumes and pins stay. An Instant "
              "Cluster cannot be stopped (Runpod's API has no stop for one): this says so and changes nothing.")
_members_verb("terminate", "Terminate every Runpod pod of cluster NAME (asks first) and forget the cluster. An "
              "Instant Cluster is deleted (DELETE /v2/clusters/{id}), which terminates every member.")

COMMANDS = [cluster]

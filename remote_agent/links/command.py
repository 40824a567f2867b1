"""The ssh command line of one link (RPC.md §5.4, verified there on loopback).

- `-L 127.0.0.1:LOCAL:127.0.0.1:RPC_PORT`: the backend's ggml-rpc-server stays on its loopback.
- A remote command instead of `-N` (fact 19): with no session OpenSSH never sets TCP_NODELAY and
  Nagle meets delayed ACKs, ~40 ms a token; with a session both ends set it. The backend forces
  the command anyway (authorized.py); ours waits for stdin to close, so the agent ends a link by
  closing its stdin, and a dropped connection ends it on the backend too (no orphan `sleep`).
- StrictHostKeyChecking=yes with only the known_hosts podtui sent (no TOFU, no user files);
  HostKeyAlias names the pin whatever address the server pod uses.
- ServerAliveInterval × (ServerAliveCountMax + 1): a frozen peer ends ssh within ~8 s, and
  llama-server then aborts instead of hanging (fact 8).
- ExitOnForwardFailure: a busy local port ends ssh at once instead of a link that forwards nothing.
"""

from __future__ import annotations

from pathlib import Path

from remote_agent.links.spec import LOOPBACK, LinkSpec

ALIVE_INTERVAL_S = 2
ALIVE_COUNT = 3
CONNECT_TIMEOUT_S = 5
# The backend's sshd side of the same rule (boot/steps.role_sshd_options): it drops a session whose client
# stopped answering, which frees ggml-rpc-server's one client slot. Measured with OpenSSH 9.2 on loopback
# (a link's ssh frozen with SIGSTOP, time until sshd closed the forwarded connection): 1 s × 3 → 7.0-7.7 s,
# 1 × 2 → 5.5 s, 1 × 4 → 9.4 s, 2 × 3 → 14.6-16.0 s, 3 × 2 → 16.5 s: about 2 × interval per unanswered
# check, not interval × count as sshd_config(5) reads.
BACKEND_CLIENT_ALIVE_INTERVAL_S = 1
BACKEND_CLIENT_ALIVE_COUNT = 3
REMOTE_COMMAND = "cat >/dev/null"  # ends when the link's stdin (held by the agent) or the connection closes


def ssh_command(link: LinkSpec, key_file: Path, known_hosts: Path, ssh: str = "ssh") -> list[str]:
    """The argv of link's ssh process; key_file and known_hosts are the files cluster.link wrote."""
    options = {
        "BatchMode": "yes", "IdentitiesOnly": "yes", "IdentityAgent": "none",
        "StrictHostKeyChecking": "yes", "UserKnownHostsFile": str(known_hosts), "GlobalKnownHostsFile": "/dev/null",
        "HostKeyAlias": link.host_key_alias, "CheckHostIP": "no", "UpdateHostKeys": "no",
        "ExitOnForwardFailure": "yes", "ServerAliveInterval": str(ALIVE_INTERVAL_S),
        "ServerAliveCountMax": str(ALIVE_COUNT), "ConnectTimeout": str(CONNECT_TIMEOUT_S),
        "ForwardAgent": "no", "ForwardX11": "no", "ClearAllForwardings": "no", "LogLevel": "ERROR",
        "PasswordAuthentication": "no", "KbdInteractiveAuthentication": "no",
    }
    argv = [ssh, "-F", "/dev/null", "-T", "-i", str(key_file), "-p", str(link.port), "-l", link.user]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    argv += ["-L", f"{LOOPBACK}:{link.local_port}:{LOOPBACK}:{link.rpc_port}", "--", link.host, REMOTE_COMMAND]
    return argv


def naive_command(link: LinkSpec, key_file: Path, known_hosts: Path, ssh: str = "ssh") -> list[str]:
    """The same link the naive way, `ssh -N` (no session, so no TCP_NODELAY): bench/rpc.py's comparison."""
    argv = ssh_command(link, key_file, known_hosts, ssh)
    return [*argv[:-3], "-N", "--", link.host]  # argv ends with "--", host, command

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
- Ciphers: AES-GCM first (CIPHERS). Each generated token brings the logits back through the last
  backend's link (n_vocab × 4 B: 128 KB for a 32,000-token vocabulary, when the output layer sits on an
  RPC device, RPC.md fact 10), and OpenSSH 9.2's default chacha20-poly1305 costs twice what AES-GCM with
  AES-NI does on that: 128 KB each way added 600-675 µs per round trip with chacha20 against 283 µs
  with aes128-gcm (bench/rpc_rtt.py, loopback); 64 B round trips cost the same with either (+65-80 µs).
  chacha20-poly1305 stays in the list for an sshd without AES-GCM; every entry is an AEAD cipher of
  OpenSSH's defaults, so the link is as safe as before.
- Measured and left alone (bench/rpc_rtt.py, bench/rpc.py): IPQoS (DSCP marks only; no change on
  loopback), Compression (already off by default; random weights and logits do not compress), the
  remote command's form (any session does: OpenSSH 9.2 sets TCP_NODELAY on all four sockets of the path,
  the client's accepted one and session socket and sshd's session socket and its connection to
  ggml-rpc-server, seen with strace).
"""

from __future__ import annotations

from pathlib import Path

from remote_agent.links.spec import LOOPBACK, LinkSpec

ALIVE_INTERVAL_S = 2
ALIVE_COUNT = 3
CONNECT_TIMEOUT_S = 5
CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com"
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
        "Ciphers": CIPHERS,
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

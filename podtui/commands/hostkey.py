"""`podtui hostkey TARGET`: show, pin, or pin from a pod log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from podtui import paths
from podtui.commands.ssh_options import canonical_fingerprints, ssh_session
from podtui.errors import HostKeyNotVerified, UsageProblem
from podtui.services import hostkeys
from podtui.services.pods import looks_like_host
from podtui.ssh.hostkeys import parse_printed_blocks
from podtui.ssh.known_hosts import KnownHosts
from podtui.ssh.trust import describe_pins


@click.command()
@click.argument("target")
@click.option("--show", is_flag=True, help="Print TARGET's pins (the default without --pin or --from-log).")
@click.option("--pin", "pin_fingerprint", metavar="SHA256:…",
              help="Connect (key exchange only) and pin the server's key with this fingerprint; "
                   "any key type the server holds (ed25519, ECDSA, RSA) is found.")
@click.option("--from-log", "log_file", type=click.Path(allow_dash=True, path_type=Path),
              help="Pin the keys of the last host-key block printed in this pod log ('-' reads stdin).")
@click.option("--user", default=None, help="Login name, only used to name the target.")
@click.option("--connect-timeout", type=float, default=10.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def hostkey(target: str, show: bool, pin_fingerprint: str | None, log_file: Path | None,
            user: str | None, connect_timeout: float, as_json: bool) -> None:
    """Show or pin TARGET's SSH host key (pins live in podtui's own known_hosts).

    For a Runpod pod (id or name) with no pins yet, the keys it printed are read from its log
    through Runpod's API and pinned first; --from-log refuses a block printed by another pod.

    A pin replaces TARGET's previous pins: that is how a deliberately rebuilt host is re-trusted.
    """
    given = [name for name, value in (("--show", show), ("--pin", pin_fingerprint),
                                      ("--from-log", log_file)) if value]
    if len(given) > 1:
        raise UsageProblem(f"{' and '.join(given)} both given", "use one of them")
    # A pod without pins gets its printed keys from its log through the provider's API, except
    # with --from-log, where the file given is the source.
    # --pin is an out-of-band check of its own: a pod's damaged log block must not stand in its way.
    session = ssh_session(target, user, pin_from_log=log_file is None and not pin_fingerprint)
    resolved = session.ssh
    known_hosts = KnownHosts(paths.known_hosts_file())
    if log_file is not None:
        text = sys.stdin.read() if str(log_file) == "-" else _read(log_file)
        block = parse_printed_blocks(text)
        # The block must come from TARGET's own boot. For a pod that is checkable; for an added
        # host or an address the block names the machine's hostname, which need not match. A bare
        # word that resolved to neither (no Runpod key, or no such pod) must equal the block's pod.
        expected = resolved.pod_id or (target if session.host is None and not looks_like_host(target) else None)
        if expected is not None and block.pod != expected:
            if resolved.pod_id is None:
                raise HostKeyNotVerified(
                    f"the host-key block in {_source(log_file)} was printed by pod {block.pod or '(none named)'!r}, "
                    f"and {target!r} is neither that pod nor an added host; nothing was pinned",
                    f"use the log of {target} itself; for a Runpod pod set RUNPOD_API_KEY so podtui can "
                    f"check the pod, for your own machine use `podtui hosts add` or user@host:port")
            raise HostKeyNotVerified(
                f"the host-key block in {_source(log_file)} was printed by "
                f"pod {block.pod or '(none named)'!r}, not by {resolved.pod_id}; nothing was pinned",
                f"use the log of pod {resolved.pod_id} itself (Runpod console → Logs), or run "
                f"`podtui hostkey {resolved.pod_id}` to read it through the API")
        pins = known_hosts.replace(resolved.alias, list(block.keys), verified=True)
        action = f"pinned from the log (block printed by pod {block.pod or '?'})"
    elif pin_fingerprint:
        (expected,) = canonical_fingerprints((pin_fingerprint,))
        pins = hostkeys.pin_if_presented(resolved, known_hosts, expected, connect_timeout_s=connect_timeout)
        action = "pinned (the server presented the expected key)"
    else:
        pins = known_hosts.pins_for(resolved.alias)
        action = "pins" if pins else "no pins"
    if as_json:
        click.echo(json.dumps({"target": resolved.label, "alias": resolved.alias,
                               "known_hosts": str(paths.known_hosts_file()), "action": action,
                               "pins": describe_pins(pins)}))
        return
    click.echo(f"{resolved.label} ({resolved.alias} in {paths.known_hosts_file()}): {action}")
    for pin in describe_pins(pins):
        click.echo(f"  {pin['type']} {pin['fingerprint']} {'verified' if pin['verified'] else 'UNVERIFIED'}")


def _source(log_file: Path) -> str:
    return "stdin" if str(log_file) == "-" else str(log_file)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror or exc}", "check the log file's path") from None


COMMANDS = [hostkey]

"""`remote-agent` entry point: boot (image entrypoint), daemon, rpc (stdio bridge over SSH)."""

from __future__ import annotations

import argparse
import sys

from remote_agent import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remote-agent",
        description="The podtui agent inside a pod: supervises the model engine, downloads and "
        "swaps models, and is reachable only through SSH (Unix socket + `remote-agent rpc`).",
    )
    parser.add_argument("--version", action="version", version=f"remote-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    boot = sub.add_parser("boot", help="image entrypoint: host keys, fingerprints, sshd, daemon")
    boot.add_argument("--dry-run", action="store_true", help="print every step, change nothing")
    daemon = sub.add_parser("daemon", help="serve the agent on a Unix socket (mode 0600)")
    daemon.add_argument("--socket")
    daemon.add_argument("--state-dir")
    daemon.add_argument("--models-dir")
    rpc = sub.add_parser("rpc", help="bridge stdin/stdout to the daemon's socket (used over SSH)")
    rpc.add_argument("--socket")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    issue = {"boot": 5, "daemon": 3, "rpc": 3}[args.command]
    print(f"remote-agent {args.command} is not built yet (issue #{issue})", file=sys.stderr)
    sys.exit(1)

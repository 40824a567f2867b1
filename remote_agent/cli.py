"""`remote-agent` entry point: boot (image entrypoint), daemon, rpc (stdio bridge over SSH), serverless-worker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from remote_agent import __version__


def build_parser() -> argparse.ArgumentParser:
    from remote_agent.server.settings import add_daemon_arguments

    parser = argparse.ArgumentParser(
        prog="remote-agent",
        description="The podtui agent inside a pod: supervises the model engine, downloads and "
        "swaps models, and is reachable only through SSH (Unix socket + `remote-agent rpc`).",
    )
    parser.add_argument("--version", action="version", version=f"remote-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    boot = sub.add_parser("boot", help="image entrypoint: host keys, fingerprints, sshd, daemon")
    from remote_agent.boot.config import add_boot_arguments

    add_boot_arguments(boot)
    daemon = sub.add_parser("daemon", help="serve the agent on a Unix socket (mode 0600)")
    add_daemon_arguments(daemon)
    rpc = sub.add_parser("rpc", help="bridge stdin/stdout to the daemon's socket (used over SSH)")
    rpc.add_argument("--socket", help="the daemon's socket (env REMOTE_AGENT_SOCKET; default as for the daemon)")
    worker = sub.add_parser("serverless-worker",
                            help="Runpod serverless job loop (boot starts it with MODE_TO_RUN=serverless)")
    from remote_agent.serverless.worker import add_worker_arguments

    add_worker_arguments(worker)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "daemon":
        from remote_agent.server.daemon import run_daemon
        from remote_agent.server.settings import SettingsError, settings_from

        try:
            settings = settings_from(args)
        except SettingsError as exc:
            print(f"remote-agent daemon: {exc}", file=sys.stderr)
            sys.exit(2)
        sys.exit(run_daemon(settings, autostart=not args.no_autostart))
    if args.command == "rpc":
        from remote_agent.server.bridge import run_bridge
        from remote_agent.paths import default_socket_path

        sys.exit(run_bridge(Path(args.socket) if args.socket else default_socket_path()))
    if args.command == "boot":
        from remote_agent.boot import main_from_args

        sys.exit(main_from_args(args))
    if args.command == "serverless-worker":
        from remote_agent.serverless.worker import main_from_args as run_worker

        sys.exit(run_worker(args))
    print(f"remote-agent {args.command} is not built yet (issue #5)", file=sys.stderr)
    sys.exit(1)

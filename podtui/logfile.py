"""Library log records go to podtui's own log file, never to the user's terminal.

paramiko logs from its transport thread (a refused banner, a failed channel open, a key exchange
it cannot agree on), with tracebacks, at WARNING and ERROR. With no handler configured, Python's
`logging.lastResort` prints those records on stderr: 23 lines before podtui's own two-line error,
and raw text in the middle of `--json` output whose stderr must be JSON lines. podtui's errors
already carry the cause and the fix; the library's detail belongs in the log file, where a bug
report can quote it (`podtui locate` prints where it is; the TUI shows it with `L`).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from pathlib import Path

from podtui import paths

LOG_NAME = "podtui.log"
MAX_BYTES = 1024 * 1024      # rotated at 1 MiB, three old files kept
LIBRARY_LOGGERS = ("paramiko",)


def log_file() -> Path:
    """Where library records (and the TUI's activity) are written: `<log_dir>/podtui.log`."""
    return paths.log_dir() / LOG_NAME


def contain_library_logs() -> Path | None:
    """Route every log record and Python warning to log_file() and keep them off stderr.

    Returns the file, or None when the log directory cannot be created (records are then
    dropped: a read-only state directory must not stop podtui). Idempotent. Also sends uncaught
    exceptions of threads to the file, with one line on stderr instead of a traceback.
    """
    root = logging.getLogger()
    if any(getattr(h, "_podtui", False) for h in root.handlers):
        return log_file()
    path = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=MAX_BYTES, backupCount=3, encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    except OSError:
        handler, path = logging.NullHandler(), None
    handler._podtui = True   # type: ignore[attr-defined]
    handler.setLevel(logging.INFO)
    root.addHandler(handler)   # with a handler on root, logging.lastResort never prints
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    logging.captureWarnings(True)
    threading.excepthook = _thread_exception
    return path


def _thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("podtui").error("uncaught exception in thread %s",
                                      getattr(args.thread, "name", "?"),
                                      exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
    try:
        reason = str(args.exc_value) or args.exc_type.__name__
        sys.stderr.write(f"podtui: internal error in a background thread: {reason} "
                         f"(details in {log_file()})\n")
    except (OSError, ValueError):
        pass

"""Logging set-up for the CLI (library callers configure logging themselves).

The console (stderr) gets ``LEVEL: message`` lines at the chosen level, written above the
progress line when stderr is a terminal
(:class:`~imagecomposer.foundation.console.TerminalHandler`); with ``--log-format json`` it
gets one JSON object per line instead (:mod:`imagecomposer.foundation.jsonevents`: the
build's events plus the log records at the chosen level). ``--log-file`` always gets the full
debug log, with timestamps: host command lines, their output, every step.

Every handler removes credentials from URLs in the lines it writes
(:class:`imagecomposer.foundation.redact.RedactingFilter`): a mirror configured as
``https://user:password@host/`` may appear in an error message, never its password.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from imagecomposer.foundation.console import TerminalHandler
from imagecomposer.foundation.errors import PermissionDenied
from imagecomposer.foundation.jsonevents import JsonEvents, JsonLines, JsonLogHandler
from imagecomposer.foundation.redact import RedactingFilter

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
FILE_FORMAT = "%(asctime)s.%(msecs)03d %(name)s %(levelname)s: %(message)s"


class _State:
    json: JsonLines | None = None


def configure(level: str = "info", file: Path | None = None, fmt: str = "text") -> None:
    """Log to stderr at ``level`` (``fmt`` text or json); with ``file``, also everything at
    debug level to it."""
    root = logging.getLogger("imagecomposer")
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if isinstance(handler, logging.FileHandler):
            handler.close()
    console: logging.Handler
    if fmt == "json":
        _State.json = JsonLines(sys.stderr)
        console = JsonLogHandler(_State.json)
    else:
        _State.json = None
        console = (TerminalHandler(sys.stderr) if sys.stderr.isatty()
                   else logging.StreamHandler(sys.stderr))
        console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    console.setLevel(LEVELS[level])
    console.addFilter(RedactingFilter())
    root.addHandler(console)
    if file is not None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            to_file = logging.FileHandler(file)
        except OSError as exc:
            raise PermissionDenied(f"Permission denied: cannot write the log file {file}: "
                                   f"{exc.strerror or exc}") from None
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(logging.Formatter(FILE_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
        to_file.addFilter(RedactingFilter())
        root.addHandler(to_file)
    root.propagate = False
    logging.raiseExceptions = False  # a closed stderr (`2>&1 | head`) is not worth a trace


def json_events() -> JsonEvents | None:
    """The event sink writing JSON lines to stderr, with ``--log-format json``."""
    return JsonEvents(_State.json) if _State.json is not None else None

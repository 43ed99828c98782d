"""Logging set-up for the CLI (library callers configure logging themselves).

Every handler removes credentials from URLs in the lines it writes
(:class:`imagecomposer.foundation.redact.RedactingFilter`): a mirror configured as
``https://user:password@host/`` may appear in an error message, never its password.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from imagecomposer.foundation.redact import RedactingFilter

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def configure(level: str = "info", file: Path | None = None) -> None:
    """Log to stderr at ``level``; with ``file``, also everything at debug level to it."""
    root = logging.getLogger("imagecomposer")
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(LEVELS[level])
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    console.addFilter(RedactingFilter())
    root.addHandler(console)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file)
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        to_file.addFilter(RedactingFilter())
        root.addHandler(to_file)
    root.propagate = False

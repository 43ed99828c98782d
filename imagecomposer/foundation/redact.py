"""Secrets never reach a log line or an error message.

A caller marks a command-line argument secret by wrapping it in :class:`Secret` (a ``str``,
so it runs unchanged); :mod:`imagecomposer.foundation.runner` shows it as ``'<redacted>'`` in the
logged command line, in error messages and in the argv kept on exceptions, and removes its
value from the tool output it keeps. Credentials in URLs (``https://user:password@host/``)
are removed from every log line by :class:`RedactingFilter`, which the CLI's log set-up
installs on each handler.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence

REDACTED = "<redacted>"

# The user-info part of a URL: everything between "scheme://" and the "@" before the host.
_USERINFO = re.compile(r"(?<=://)[^/\s@'\"]+@")


class Secret(str):
    """A command-line argument that must never be shown: a password hash, a passphrase."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"


def secrets_in(argv: Sequence[str | os.PathLike[str]], extra: Iterable[str] = ()
               ) -> frozenset[str]:
    """The secret values of ``argv`` (its :class:`Secret` items) plus ``extra``; empty
    strings are never secrets (replacing them would mangle every message)."""
    found = {str.__str__(a) for a in argv if isinstance(a, Secret)}
    found.update(str(s) for s in extra)
    return frozenset(s for s in found if s)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret value and every URL's user-info replaced."""
    for value in sorted(secrets, key=len, reverse=True):  # longest first: overlaps
        if value:
            text = text.replace(value, REDACTED)
    return redact_urls(text)


def redact_urls(text: str) -> str:
    """``https://user:password@host/`` → ``https://<redacted>@host/``."""
    return _USERINFO.sub(f"{REDACTED}@", text)


def shown_argv(argv: Sequence[str | os.PathLike[str]], secrets: Iterable[str] = ()
               ) -> list[str]:
    """``argv`` as it may be shown: :class:`Secret` items and secret values redacted."""
    values = secrets_in(argv, secrets)
    return [REDACTED if isinstance(a, Secret) else redact(str(a), values) for a in argv]


class RedactingFilter(logging.Filter):
    """Removes URL credentials from a record's message before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_urls(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True

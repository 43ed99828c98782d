"""Short reprs and Jupyter tables for the library's objects, never showing a secret.

A repr is one line under ~200 characters that names what an object is (``Spec(name=...,
os=..., packages=6)``, ``PackageCache(root=..., enabled=True)``); ``_repr_html_`` renders a
table in notebooks. Neither ever contains a password hash, a passphrase, key material, an SSH
key, inline file content or a URL's credentials: secret fields of the spec's attrs classes
use :func:`secret` (or :func:`url`) as their field ``repr``, and the hand-written reprs only
show names, counts and paths. Every value put into HTML is escaped here.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import PurePath

from imagecomposer.foundation.redact import REDACTED, redact_urls
from imagecomposer.foundation.units import human_size


def secret(value: object) -> str:
    """The attrs field ``repr=`` of a secret: whether it is set, never what it is."""
    if value is None:
        return "None"
    if isinstance(value, tuple | list):
        return f"<{len(value)} {REDACTED[1:-1]}>" if value else "()"
    return repr(REDACTED) if value else repr(value)


def url(value: str | None) -> str:
    """The attrs field ``repr=`` of a URL: credentials (``user:password@``) removed."""
    return "None" if value is None else repr(redact_urls(value))


class Bare:
    """A value :func:`call` shows without quotes (``formats=raw,qcow2``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def call(cls: str, /, **fields: object) -> str:
    """``Cls(key=value, ...)``: strings and paths quoted (repr of the str), everything else
    as ``str``; fields whose value is None are left out."""
    shown = [f"{key}={value!r}" if isinstance(value, str) else
             f"{key}={str(value)!r}" if isinstance(value, PurePath) else f"{key}={value}"
             for key, value in fields.items() if value is not None]
    return f"{cls}({', '.join(shown)})"


def joined(values: Iterable[object], *, limit: int = 8, sep: str = ",") -> str:
    """``a,b,c`` with at most ``limit`` items, then ``+N``."""
    items = [str(v) for v in values]
    if len(items) > limit:
        return sep.join(items[:limit]) + f"{sep}+{len(items) - limit}"
    return sep.join(items)


def size(n: int | None) -> str:
    """Bytes for people: 512 B, 1.5 MiB, 2.0 GiB (None: auto)."""
    return "auto" if n is None else human_size(n)


def _cell(value: object) -> str:
    return html.escape("" if value is None else str(value))


def html_fields(title: str, rows: Iterable[tuple[str, object]]) -> str:
    """A two-column table (field, value) under a bold title."""
    body = "".join(f"<tr><th style='text-align:left'>{_cell(k)}</th><td>{_cell(v)}</td></tr>"
                   for k, v in rows)
    return f"<p><b>{_cell(title)}</b></p><table>{body}</table>"


def html_grid(headers: Sequence[str], rows: Iterable[Sequence[object]], *,
              title: str | None = None, right: Iterable[int] = ()) -> str:
    """A table with a header row; ``right`` are the indexes of right-aligned columns."""
    aligned = set(right)
    head = "".join(f"<th>{_cell(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f"<td style='text-align:right'>{_cell(c)}</td>" if i in aligned
            else f"<td>{_cell(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    caption = f"<p><b>{_cell(title)}</b></p>" if title is not None else ""
    return f"{caption}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

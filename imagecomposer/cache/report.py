"""What ``imagecomposer cache list|prune|clean`` print, as objects: a plain-text table
(``str()``), a short ``repr()`` and an HTML table for Jupyter (``_repr_html_``).

Times are the caches' bookkeeping (when an entry was created, last used), shown in UTC.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Collection, Sequence
from pathlib import Path

import attrs

from imagecomposer.foundation.store import Limits, Removal, StoreEntry, StoreStats
from imagecomposer.foundation.units import human_size


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M")


def entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = (),
           indent: str = "") -> list[str]:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    out = []
    for row in (header, *rows):
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _entry_rows(entries: Sequence[StoreEntry]) -> list[list[str]]:
    return [[e.label, human_size(e.size), when(e.created), when(e.last_used)]
            for e in sorted(entries, key=lambda e: e.label)]


ENTRY_HEADER = ("entry", "size", "created", "last used")


@attrs.frozen(repr=False)
class CacheInfo:
    """One cache: where it is, its limits and its entries."""

    name: str
    description: str
    root: Path
    enabled: bool
    limits: Limits
    entries: tuple[StoreEntry, ...]
    per: str = ""  # what max_count counts per ("image"), "" for the whole cache

    @property
    def stats(self) -> StoreStats:
        return StoreStats.of(self.entries)

    @property
    def count(self) -> int:
        return len(self.entries)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def limit_text(self) -> str:
        text = self.limits.describe(self.per)
        return text if self.enabled else f"disabled; {text}"

    def row(self) -> list[str]:
        stats = self.stats
        return [self.name, str(stats.count), human_size(stats.bytes), self.limit_text,
                when(stats.oldest_use), when(stats.newest_use), str(self.root)]

    def table(self) -> str:
        """A heading, then one line per entry."""
        lines = [f"{self.name}: {self.description}, {entries(self.count)}, {human_size(self.size)} "
                 f"in {self.root} (limits: {self.limit_text})"]
        if self.entries:
            lines += _table(ENTRY_HEADER, _entry_rows(self.entries), right={1}, indent="  ")
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        return (f"<cache {self.name}: {entries(self.count)}, {human_size(self.size)} in "
                f"{self.root} (limits: {self.limit_text})>")

    def _repr_html_(self) -> str:
        return (f"<p><b>{html.escape(self.name)}</b>: {html.escape(self.description)}, "
                f"{entries(self.count)}, {html.escape(human_size(self.size))} in "
                f"<code>{html.escape(str(self.root))}</code> (limits: "
                f"{html.escape(self.limit_text)})</p>"
                + _html_table(ENTRY_HEADER, _entry_rows(self.entries)))


SUMMARY_HEADER = ("cache", "entries", "size", "limits", "oldest use", "newest use",
                  "directory")


@attrs.frozen(repr=False)
class CacheListing:
    """Every cache (``imagecomposer cache list``)."""

    caches: tuple[CacheInfo, ...]

    def __getitem__(self, name: str) -> CacheInfo:
        for cache in self.caches:
            if cache.name == name:
                return cache
        raise KeyError(name)

    @property
    def count(self) -> int:
        return sum(c.count for c in self.caches)

    @property
    def size(self) -> int:
        return sum(c.size for c in self.caches)

    def table(self, *, entries: bool = False) -> str:
        """One line per cache and a total; ``entries``: then each cache's entries."""
        rows = [c.row() for c in self.caches]
        rows.append(["total", str(self.count), human_size(self.size), "", "", "", ""])
        lines = _table(SUMMARY_HEADER, rows, right={1, 2})
        if entries:
            for cache in self.caches:
                lines += ["", cache.table()]
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        parts = ", ".join(f"{c.name} {c.count}" for c in self.caches)
        return f"<CacheListing {entries(self.count)}, {human_size(self.size)}: {parts}>"

    def _repr_html_(self) -> str:
        rows = [c.row() for c in self.caches]
        rows.append(["total", str(self.count), human_size(self.size), "", "", "", ""])
        return _html_table(SUMMARY_HEADER, rows)


REMOVAL_HEADER = ("cache", "entries", "size", "damaged", "leftovers", "in use (kept)")


@attrs.frozen(repr=False)
class CacheRemoval:
    """What ``imagecomposer cache prune|clean`` removed (or would remove)."""

    action: str  # "prune" or "clean"
    dry_run: bool
    removals: tuple[tuple[str, Removal], ...]

    @property
    def verb(self) -> str:
        return "would remove" if self.dry_run else "removed"

    @property
    def count(self) -> int:
        return sum(len(r.entries) for _, r in self.removals)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for _, r in self.removals)

    def _rows(self) -> list[list[str]]:
        rows = [[name, str(len(r.entries)), human_size(r.bytes), str(len(r.damaged)),
                 str(len(r.leftovers)), str(len(r.in_use))] for name, r in self.removals]
        rows.append(["total", str(self.count), human_size(self.bytes), "", "", ""])
        return rows

    def table(self, *, entries: bool = False) -> str:
        """One line per cache and a total; ``entries``: then what each one removed."""
        lines = [f"cache {self.action}{' (dry run)' if self.dry_run else ''}: {self.verb}"]
        lines += _table(REMOVAL_HEADER, self._rows(), right={1, 2, 3, 4, 5})
        if entries:
            for name, removal in self.removals:
                if not (removal.entries or removal.leftovers):
                    continue
                why = {e.key: f"damaged: {p}" for e, p in removal.damaged}
                lines += ["", f"{name}: {self.verb}"]
                lines += [f"  {e.label}  {human_size(e.size)}"
                          + (f"  ({why[e.key]})" if e.key in why else "")
                          for e in sorted(removal.entries, key=lambda e: e.label)]
                lines += [f"  {path}  (left by an interrupted write)"
                          for path in removal.leftovers]
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        return (f"<CacheRemoval {self.action}: {self.verb} {entries(self.count)}, "
                f"{human_size(self.bytes)}>")

    def _repr_html_(self) -> str:
        return (f"<p>cache {html.escape(self.action)}: {self.verb}</p>"
                + _html_table(REMOVAL_HEADER, self._rows()))

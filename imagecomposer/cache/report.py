"""Plain-text tables of cache entries for ``imagecomposer cache list|prune|clean``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from imagecomposer.cache.store import CacheEntry
from imagecomposer.foundation.units import human_size as human

if TYPE_CHECKING:  # images.py imports the export layer; the report needs its type only
    from imagecomposer.cache.images import Entry


def format_entries(entries: Sequence[CacheEntry], *, verb: str = "") -> str:
    """One line per entry (name, version, size, last use), then a total.

    ``verb`` prefixes the total ("removed", "would remove").
    """
    lines = []
    for e in sorted(entries, key=lambda e: (e.name, e.version)):
        used = dt.datetime.fromtimestamp(e.last_used, dt.UTC).strftime("%Y-%m-%d")
        lines.append(f"{e.name:<40} {e.version:<32} {e.arch:<6} {human(e.size):>10}  "
                     f"{used}  {e.sha256[:12]}")
    total = sum(e.size for e in entries)
    head = f"{verb} " if verb else ""
    lines.append(f"{head}{len(entries)} package(s), {human(total)}")
    return "\n".join(lines)


def format_images(entries: Sequence[Entry]) -> str:
    """One line per cached image (name, key, size, files, last use), then a total."""
    lines = []
    for e in entries:
        used = dt.datetime.fromtimestamp(e.last_used, dt.UTC).strftime("%Y-%m-%d")
        files = ", ".join(f.name for f in e.files)
        lines.append(f"{e.name:<24} {e.digest[:12]}  {human(e.size):>10}  {used}  {files}")
    lines.append(f"{len(entries)} image(s), {human(sum(e.size for e in entries))}")
    return "\n".join(lines)

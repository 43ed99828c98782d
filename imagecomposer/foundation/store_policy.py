"""What a :class:`~imagecomposer.foundation.store.Store` holds and evicts, as values:
its limits, its entries with their bookkeeping, statistics, what a prune removed, and the
eviction rule itself (least recently used first), kept apart from the filesystem work."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.foundation.units import human_size

DAY = 86400.0


@attrs.frozen
class Limits:
    """When entries are evicted; None: no such limit."""

    max_bytes: int | None = None
    max_age: float | None = None  # seconds since the last use
    max_count: int | None = None  # entries per group (see Store's ``group``)

    @classmethod
    def of(cls, *, max_size_gb: float | None = None, retention_days: float | None = None,
           max_count: int | None = None) -> Limits:
        """From the configuration's units (GiB, days)."""
        return cls(None if max_size_gb is None else int(max_size_gb * 1024**3),
                   None if retention_days is None else retention_days * DAY, max_count)

    def describe(self, per: str = "") -> str:
        """``5 per image, 20.0 GiB, 30 days``; ``none`` without limits."""
        parts = []
        if self.max_count is not None:
            unit = "entry" if self.max_count == 1 else "entries"
            parts.append(f"{self.max_count} {'per ' + per if per else unit}")
        if self.max_bytes is not None:
            parts.append(human_size(self.max_bytes))
        if self.max_age is not None:
            parts.append(f"{self.max_age / DAY:g} days")
        return ", ".join(parts) or "none"


NO_LIMITS = Limits()


@attrs.frozen(repr=False)
class StoreEntry:
    key: str
    path: Path
    size: int  # bytes on disk
    created: float
    last_used: float
    meta: Mapping[str, Any] = attrs.field(factory=dict, eq=False)
    inode: int = attrs.field(default=0, eq=False)  # of the entry when it was listed

    @property
    def label(self) -> str:
        """What the entry holds, for people (``bash 5.2.15-2 amd64``); the key by default."""
        return str(self.meta.get("label") or self.key)

    def __repr__(self) -> str:
        return f"<StoreEntry {self.label} {human_size(self.size)}>"


@attrs.frozen
class StoreStats:
    count: int = 0
    bytes: int = 0
    oldest_use: float | None = None
    newest_use: float | None = None
    oldest_created: float | None = None
    newest_created: float | None = None

    @classmethod
    def of(cls, entries: Sequence[StoreEntry]) -> StoreStats:
        if not entries:
            return cls()
        used = [e.last_used for e in entries]
        created = [e.created for e in entries]
        return cls(len(entries), sum(e.size for e in entries), min(used), max(used),
                   min(created), max(created))


@attrs.frozen
class Removal:
    """What a prune or clean removed (or, with ``dry_run``, would remove)."""

    entries: tuple[StoreEntry, ...] = ()
    damaged: tuple[tuple[StoreEntry, str], ...] = ()  # among ``entries``, with what is wrong
    leftovers: tuple[Path, ...] = ()  # staging areas of dead writers
    in_use: tuple[StoreEntry, ...] = ()  # due for removal, but being read: kept
    dry_run: bool = False

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.entries)


def disk_usage(path: Path) -> int:
    """Allocated bytes of a file or a directory tree (hard links counted once, symbolic
    links not followed); 0 when it is gone."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    total = st.st_blocks * 512
    if not stat.S_ISDIR(st.st_mode):
        return total
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            try:
                child = (Path(dirpath) / name).lstat()
            except OSError:
                continue
            if child.st_nlink > 1 and not stat.S_ISDIR(child.st_mode):
                if (child.st_dev, child.st_ino) in seen:
                    continue
                seen.add((child.st_dev, child.st_ino))
            total += child.st_blocks * 512
    return total


def select_victims(entries: Sequence[StoreEntry], limits: Limits, now: float, *,
                   keep: Collection[str] = (), group: Callable[[str], str] | None = None,
                   incoming: str | None = None) -> list[StoreEntry]:
    """The entries ``limits`` evict, least recently used first: unused longer than
    ``max_age``, beyond ``max_count`` in their group, then until ``max_bytes`` is met.
    Keys in ``keep`` are never chosen (they still count towards the limits). ``incoming``:
    the key of an entry about to be written, which takes one of its group's ``max_count``
    places unless it is there already (what storing it will evict, chosen before)."""
    by_use = sorted(entries, key=lambda e: (e.last_used, e.key))
    present = {e.key for e in entries}
    victims: list[StoreEntry] = []
    chosen: set[str] = set()

    def choose(entry: StoreEntry) -> None:
        if entry.key not in keep and entry.key not in chosen:
            victims.append(entry)
            chosen.add(entry.key)

    if limits.max_age is not None:
        for entry in by_use:
            if now - entry.last_used > limits.max_age:
                choose(entry)
    if limits.max_count is not None:
        groups: dict[str, list[StoreEntry]] = {}
        for entry in reversed(by_use):  # most recently used first
            if entry.key not in chosen:
                groups.setdefault(group(entry.key) if group else "", []).append(entry)
        reserved = (group(incoming) if group else "") if (
            incoming is not None and incoming not in present) else None
        for name, members in groups.items():
            room = limits.max_count - (1 if name == reserved else 0)
            for entry in members[max(room, 0):]:
                choose(entry)
    if limits.max_bytes is not None:
        total = sum(e.size for e in entries if e.key not in chosen)
        for entry in by_use:
            if total <= limits.max_bytes:
                break
            if entry.key in chosen or entry.key in keep:
                continue
            choose(entry)
            total -= entry.size
    return sorted(victims, key=lambda e: (e.last_used, e.key))

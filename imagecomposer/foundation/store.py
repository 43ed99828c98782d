"""One directory of cache entries addressed by key: the primitive every cache stands on.

Layout under ``root``::

    KEY               an entry: a file or a directory. Keys are relative paths whose parts
                      do not start with a dot (``objects/ab/ab12….deb``, ``v1-3f2a…``)
    .store.json       bookkeeping: per key, when the entry was created and last used, its
                      size and a small ``meta`` record (replaced atomically, under the lock)
    .lock             flock: bookkeeping, renames into place and eviction are exclusive
    .tmp/PID-RANDOM/  a writer's staging area: the entry is built there and renamed into
                      place when complete, so no reader ever sees half of one. The areas of
                      dead writers (their pid is gone, or a day old) are leftovers, removed
                      by the next write, prune or clean
    .use/DIGEST       shared flocks held while an entry is read (restored, copied):
                      eviction skips an entry in use

Nothing is created before the first write (a store over a directory the user cannot write
is listed as empty; writing raises :class:`CacheNotWritable` naming the directory and the
setting that chooses it). Reads re-check an entry with the store's ``verify`` hook (or a
per-call ``check``); a damaged entry is discarded. ``prune`` evicts damaged entries (with
``verify=True``), then those unused for ``limits.max_age``, those beyond
``limits.max_count`` per group, then the least recently used until the store fits
``limits.max_bytes``. Sizes are disk usage (allocated blocks, hard links counted once),
as ``du`` reports. Times are wall-clock seconds and live in the bookkeeping only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from imagecomposer.foundation.cleanup import delete_soon
from imagecomposer.foundation.errors import CacheError, CacheNotWritable
from imagecomposer.foundation.filelock import exclusive
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.foundation.store_policy import (
    DAY,
    NO_LIMITS,
    Limits,
    Removal,
    StoreEntry,
    StoreStats,
    disk_usage,
    select_victims,
)

__all__ = ["DAY", "NO_LIMITS", "Limits", "Removal", "Store", "StoreEntry", "StoreStats",
           "check_key", "disk_usage", "select_victims"]

log = logging.getLogger("imagecomposer.cache")

INDEX = ".store.json"
LOCK = ".lock"
TMP = ".tmp"
USE = ".use"
INDEX_FORMAT = 1
_PART = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$")
_STAGING = re.compile(r"^(\d+)-[0-9a-f]+$")
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)

Verify = Callable[[Path], str | None]  # the entry's path -> what is wrong, or None


def check_key(key: str) -> str:
    """``key`` if it names an entry (relative, no part starting with a dot); else ValueError."""
    parts = key.split("/")
    if not key or not all(_PART.match(part) for part in parts):
        raise ValueError(f"invalid cache key {key!r}")
    return key


class Store:
    """Entries under ``root`` matched by ``patterns`` (globs relative to ``root``).

    ``verify`` re-checks an entry (its path) and says what is wrong with it, or None;
    ``group`` maps a key to the group ``limits.max_count`` counts in (default: one group).
    ``what`` names the store in messages, ``setting`` the configuration key that chooses
    ``root`` (for the error when it cannot be written).
    """

    def __init__(self, root: Path, *, patterns: Sequence[str] = ("*",),
                 limits: Limits = NO_LIMITS, verify: Verify | None = None,
                 group: Callable[[str], str] | None = None, what: str = "cache",
                 setting: str = "core.cache_dir") -> None:
        self.root = Path(root)
        self.patterns = tuple(patterns)
        self.limits = limits
        self.verify = verify
        self.group = group
        self.what = what
        self.setting = setting

    def __repr__(self) -> str:
        return f"<Store {self.what} at {self.root}>"

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def exists(self, key: str) -> bool:
        return os.path.lexists(self.path(key))

    # --- errors, locks, bookkeeping ----------------------------------------------------

    def _denied(self, path: Path | str, exc: OSError) -> CacheNotWritable:
        return CacheNotWritable(
            f"Permission denied: cannot write the {self.what} in {self.root} "
            f"({exc.filename or path}: {exc.strerror or exc}); set {self.setting} in the "
            f"global configuration to a directory you can write")

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno in _DENIED:
                raise self._denied(path, exc) from None
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._mkdir(self.root)
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(exclusive(self.root / LOCK))
            except OSError as exc:
                if exc.errno in _DENIED:
                    raise self._denied(self.root, exc) from None
                raise
            yield

    def _read_index(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads((self.root / INDEX).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
            return {}
        entries = data.get("entries")
        return {k: v for k, v in entries.items() if isinstance(v, dict)} \
            if isinstance(entries, dict) else {}

    def _write_index(self, index: Mapping[str, Mapping[str, Any]]) -> None:
        try:
            atomic_write(self.root / INDEX, json.dumps(
                {"format": INDEX_FORMAT, "entries": index}, sort_keys=True,
                separators=(",", ":")))
        except OSError as exc:
            if exc.errno in _DENIED:
                raise self._denied(self.root, exc) from None
            raise

    def _record(self, path: Path, st: os.stat_result) -> dict[str, Any]:
        return {"created": st.st_mtime, "last_used": st.st_mtime, "size": disk_usage(path)}

    # --- reading ------------------------------------------------------------------------

    def get(self, key: str, *, check: Verify | None = None, touch: bool = True
            ) -> Path | None:
        """The path of entry ``key`` after checking it (``check``, else the store's
        ``verify``), or None: missing, or damaged (then it is discarded with a warning)."""
        path = self.path(key)
        try:
            inode = os.lstat(path).st_ino
        except OSError:
            return None
        verify = check or self.verify
        problem = _checked(verify, path) if verify is not None else None
        if problem is not None:
            log.warning("%s entry %s is damaged (%s); discarding it", self.what, path, problem)
            self.remove(key, inode=inode)
            return None
        if touch:
            self.touch([key])
        return path

    def touch(self, keys: Iterable[str], *, meta: Mapping[str, Mapping[str, Any]] | None = None,
              when: float | None = None) -> None:
        """Record a use of ``keys`` now (or at ``when``), merging ``meta`` per key. Best
        effort: a cache the user can only read is used without bookkeeping."""
        now = time.time() if when is None else when
        keys = [key for key in keys if os.path.lexists(self.path(key))]
        if not keys:
            return
        try:
            with self._locked():
                index = self._read_index()
                for key in keys:
                    record = index.get(key)
                    if record is None:
                        path = self.path(key)
                        try:
                            record = index[key] = self._record(path, os.lstat(path))
                        except OSError:
                            continue
                    record["last_used"] = now
                    if meta is not None and key in meta:
                        record["meta"] = {**record.get("meta", {}), **meta[key]}
                self._write_index(index)
        except (CacheNotWritable, OSError) as exc:
            log.debug("%s: cannot record the use of entries: %s", self.what, exc)

    @contextlib.contextmanager
    def using(self, key: str) -> Iterator[Path | None]:
        """Hold entry ``key`` in use for the ``with`` block (eviction skips it); yields its
        path, or None when there is no such entry."""
        path = self.path(key)
        lock = None
        if os.path.lexists(path):
            with contextlib.suppress(OSError):  # a cache the user can only read: nobody
                lock = self._use_lock(key, fcntl.LOCK_SH)  # evicts from it either
        try:
            yield path if os.path.lexists(path) else None
        finally:
            if lock is not None:
                lock.close()

    def _use_path(self, key: str) -> Path:
        return self.root / USE / hashlib.sha256(key.encode()).hexdigest()[:32]

    def _use_lock(self, key: str, mode: int) -> IO[str]:
        """An flock on ``key``'s use file, taken on the file that is there once it is held
        (an evictor may unlink it meanwhile). Raises BlockingIOError when ``mode`` has
        LOCK_NB and the lock is held the other way, OSError when it cannot be taken."""
        path = self._use_path(key)
        while True:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = path.open("a")
            try:
                fcntl.flock(fh, mode)
                with contextlib.suppress(FileNotFoundError):
                    if os.fstat(fh.fileno()).st_ino == path.stat().st_ino:
                        return fh
            except BaseException:
                fh.close()
                raise
            fh.close()

    # --- writing ------------------------------------------------------------------------

    def _staging(self) -> Path:
        self._mkdir(self.root / TMP)
        area = self.root / TMP / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            area.mkdir()
        except OSError as exc:
            if exc.errno in _DENIED:
                raise self._denied(area.parent, exc) from None
            raise
        return area

    def write(self, key: str, fill: Callable[[Path], object], *,
              meta: Mapping[str, Any] | None = None, replace: bool = True,
              record: bool = True) -> Path:
        """Create entry ``key`` atomically: ``fill(path)`` writes the file or directory
        ``path`` (in a staging area of the store), which is then renamed into place and
        recorded (``record=False``: by the caller's next :meth:`touch`, which batches the
        bookkeeping of many writes). An existing entry is replaced, or with
        ``replace=False`` kept (the new copy is dropped). If ``fill`` fails nothing is left
        behind."""
        final = self.path(key)
        self.remove_leftovers()
        area = self._staging()
        staged = area / "entry"
        try:
            fill(staged)
            if not os.path.lexists(staged):
                raise CacheError(f"{self.what}: nothing was written for {key}")
            size = disk_usage(staged)
            with self._locked():
                try:
                    if os.path.lexists(final):
                        if not replace:
                            self._touch_locked(key)
                            return final
                        if final.is_dir() and not final.is_symlink():
                            final.rename(area / "old")  # a directory cannot be renamed over
                    self._mkdir(final.parent)
                    staged.rename(final)
                except OSError as exc:
                    if exc.errno in _DENIED:
                        raise self._denied(final.parent, exc) from None
                    raise CacheError(f"cannot store {key} in the {self.what} {self.root}: "
                                     f"{exc.strerror or exc}") from None
                if record:
                    now = time.time()
                    index = self._read_index()
                    index[key] = {"created": now, "last_used": now, "size": size,
                                  "meta": dict(meta or {})}
                    self._write_index(index)
        finally:
            _rmtree(area)
        return final

    def write_bytes(self, key: str, data: bytes, *, meta: Mapping[str, Any] | None = None
                    ) -> Path:
        return self.write(key, lambda path: path.write_bytes(data), meta=meta)

    def _touch_locked(self, key: str) -> None:
        index = self._read_index()
        if key in index:
            index[key]["last_used"] = time.time()
            self._write_index(index)

    # --- removing -----------------------------------------------------------------------

    def remove(self, key: str, *, inode: int | None = None) -> bool:
        """Remove entry ``key`` (with ``inode``: only if it is still that file, not a
        fresh copy); False when it is in use or was replaced."""
        path = self.path(key)
        if not os.path.lexists(path):
            return True
        area = self._staging()
        try:
            with self._locked():
                index = self._read_index()
                done = self._evict_one(key, inode, area)
                if done:
                    index.pop(key, None)
                    self._write_index(index)
        finally:
            _rmtree(area)
        return done

    def _evict_one(self, key: str, inode: int | None, area: Path) -> bool:
        """Under the lock: move entry ``key`` out of the way (into ``area``)."""
        path = self.path(key)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return True
        if inode is not None and st.st_ino != inode:
            return False
        try:
            use = self._use_lock(key, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # being read
        with use:
            if stat.S_ISDIR(st.st_mode):
                path.rename(area / f"gone-{uuid.uuid4().hex[:12]}")
            else:
                path.unlink()
            if path.parent != self.root:
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # an emptied objects/ab/ or image name
            self._use_path(key).unlink()  # readers waiting on it notice (see _use_lock)
        return True

    def _evict(self, victims: Sequence[StoreEntry], dry_run: bool,
               others: Sequence[StoreEntry] = (), *, background: bool = False
               ) -> tuple[list[StoreEntry], list[StoreEntry]]:
        """Remove ``victims`` (but those in use or replaced) under the lock; ``others`` that
        have no bookkeeping yet (written by an older version) get theirs. ``background``:
        the victims, moved into a private staging area under the lock (gone for every
        reader when this returns), are deleted by a background thread
        (:func:`imagecomposer.foundation.cleanup.delete_soon`)."""
        if dry_run:
            return list(victims), []
        removed: list[StoreEntry] = []
        kept: list[StoreEntry] = []
        if not victims and not others:
            return removed, kept
        index = self._read_index()
        adopt = [e for e in others if e.key not in index]
        if not victims and not adopt:
            return removed, kept
        area = self._staging()
        try:
            with self._locked():
                index = self._read_index()
                for entry in adopt:
                    index.setdefault(entry.key, {"created": entry.created,
                                                 "last_used": entry.last_used,
                                                 "size": entry.size, "meta": dict(entry.meta)})
                for entry in victims:
                    if self._evict_one(entry.key, entry.inode or None, area):
                        index.pop(entry.key, None)
                        removed.append(entry)
                    else:
                        kept.append(entry)
                index = {k: v for k, v in index.items() if os.path.lexists(self.root / k)}
                self._write_index(index)
        finally:
            if background and removed:
                delete_soon(area)
            else:
                _rmtree(area)
        return removed, kept

    def leftovers(self) -> list[Path]:
        """Staging areas of writers that are gone (pid dead, or older than a day)."""
        try:
            areas = sorted((self.root / TMP).iterdir())
        except OSError:
            return []
        return [area for area in areas if _abandoned(area)]

    def remove_leftovers(self, *, dry_run: bool = False) -> list[Path]:
        found = self.leftovers()
        if not dry_run:
            for area in found:
                log.info("%s: removing %s, left by an interrupted write", self.what, area)
                _rmtree(area)
        return found

    # --- inventory ----------------------------------------------------------------------

    def _scan(self) -> Iterator[tuple[str, Path]]:
        if not self.root.is_dir():
            return
        seen: set[str] = set()
        for pattern in self.patterns:
            for path in sorted(self.root.glob(pattern)):
                key = path.relative_to(self.root).as_posix()
                if key not in seen and all(_PART.match(p) for p in key.split("/")):
                    seen.add(key)
                    yield key, path

    def entries(self) -> list[StoreEntry]:
        """Every entry, by key, with its bookkeeping (an entry written by an older version
        has none: its modification time stands in for both times)."""
        index = self._read_index()
        found = []
        for key, path in self._scan():
            try:
                st = os.lstat(path)
            except OSError:
                continue
            record = index.get(key) or self._record(path, st)
            size = record.get("size") if stat.S_ISDIR(st.st_mode) else st.st_blocks * 512
            found.append(StoreEntry(
                key, path, size if isinstance(size, int) else disk_usage(path),
                float(record.get("created", st.st_mtime)),
                float(record.get("last_used", st.st_mtime)),
                dict(record.get("meta") or {}), st.st_ino))
        return found

    def stats(self) -> StoreStats:
        return StoreStats.of(self.entries())

    def damaged(self, entries: Sequence[StoreEntry] | None = None, *, parallel: int = 4
                ) -> list[tuple[StoreEntry, str]]:
        """The entries (default: all) the ``verify`` hook rejects, checked in parallel."""
        verify = self.verify
        candidates = self.entries() if entries is None else list(entries)
        if verify is None or not candidates:
            return []

        def one(entry: StoreEntry) -> str | None:
            return _checked(verify, entry.path)

        workers = max(1, min(parallel, os.cpu_count() or 1, len(candidates)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
            problems = list(pool.map(one, candidates))
        return [(e, p) for e, p in zip(candidates, problems, strict=True) if p is not None]

    def prune(self, *, dry_run: bool = False, keep: Collection[str] = (),
              verify: bool = False, parallel: int = 4, incoming: str | None = None,
              background: bool = False) -> Removal:
        """Remove leftovers, damaged entries (``verify``: every entry is checked), then
        what the limits evict; ``keep`` protects keys from the limits. ``incoming``: the
        key of an entry about to be written, counted as if it were there
        (:func:`select_victims`). ``background``: the evicted entries disappear at once,
        their files are deleted in a background thread (:meth:`_evict`)."""
        leftovers = self.remove_leftovers(dry_run=dry_run)
        entries = self.entries()
        damaged = self.damaged(entries, parallel=parallel) if verify else []
        for entry, problem in damaged:
            what = entry.path if entry.label == entry.key else f"{entry.label} at {entry.path}"
            log.warning("%s entry %s is damaged (%s); %s", self.what, what, problem,
                        "would remove it" if dry_run else "removing it")
        bad = {e.key for e, _ in damaged}
        victims = [e for e, _ in damaged] + select_victims(
            [e for e in entries if e.key not in bad], self.limits, time.time(), keep=keep,
            group=self.group, incoming=incoming)
        chosen = {e.key for e in victims}
        removed, in_use = self._evict(victims, dry_run,
                                      [e for e in entries if e.key not in chosen],
                                      background=background)
        gone = {e.key for e in removed}
        return Removal(tuple(removed), tuple((e, p) for e, p in damaged if e.key in gone),
                       tuple(leftovers), tuple(in_use), dry_run)

    def clean(self, *, dry_run: bool = False) -> Removal:
        """Remove every entry (but those in use) and every leftover."""
        leftovers = self.remove_leftovers(dry_run=dry_run)
        removed, in_use = self._evict(self.entries(), dry_run)
        return Removal(tuple(removed), (), tuple(leftovers), tuple(in_use), dry_run)


def _checked(verify: Verify, path: Path) -> str | None:
    """``verify(path)``; an entry it cannot read or parse is damaged too."""
    try:
        return verify(path)
    except (OSError, ValueError) as exc:
        return f"unreadable: {getattr(exc, 'strerror', None) or exc}"


def _abandoned(area: Path) -> bool:
    try:
        age = time.time() - area.lstat().st_mtime
    except FileNotFoundError:
        return False
    match = _STAGING.match(area.name)
    if match is None or int(match.group(1)) == os.getpid():
        return age > DAY  # a stranger, or our own (another thread may be writing it)
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return age > DAY  # alive, unless the pid was reused


def _rmtree(path: Path) -> None:
    """Remove a file or a tree, read-only files included (their directories are not)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

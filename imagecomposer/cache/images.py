"""The image cache: finished build outputs keyed by every input of the build.

A key (:class:`CacheKey`) is made by the pipeline from the typed inputs of the stages that
produce the outputs (see ``imagecomposer.pipeline.build``): a digest over them, and the
fingerprint of each input field, kept in each entry so that a miss can name the field that
changed. Entries are written to a temporary directory and renamed into
place (never a partial entry); files are stored read-only with their digests, computed from
the build's outputs (not from the copies in the cache), in a record sealed with a key kept
outside the cache directory (:mod:`imagecomposer.foundation.seal`): whoever can write the
cache cannot rewrite a file and its digest to match. A lookup checks the seal, then every
file against its sealed digest before the entry is used (reading only the data of sparse
images, see :func:`~imagecomposer.foundation.digest.sparse_sha256`): an entry that is not
sealed, whose seal does not hold, or whose files were modified is discarded with a warning
and the lookup is a miss. A hit restores the outputs with a reflink, else a hard link, else
a copy, into a staging directory that atomically replaces the output directory; what was
staged is checked again first (a hard link must be the very file the lookup hashed, a copy
is hashed), so a file swapped in the cache between lookup and restore is never published.
At most ``max_count`` entries per image name are kept, least recently used first out,
within the size and age limits of ``storage.image_cache``. The staging areas of a killed
store are removed by the next lookup, store or prune.

With a shared store (``storage.shared_store``, :mod:`imagecomposer.cache.shared`) the cache
spans build hosts: after a build the entry's files are published there by their SHA256,
with a record naming them under the key, sealed with this host's key
(:mod:`imagecomposer.cache.shared_images`); a lookup that misses here takes the entry from
there. The hosts of a cluster share ``storage.seal_key``, as machines sharing a cache do:
a record whose seal does not hold (another key, or forged by a writer of the store) is not
used. The local entry's own seal cannot vouch for what comes from another host, so each
file is checked by content instead: copied with its SHA256 checked against the record, and
only then sealed into this host's cache. A file that does not match (a partial or damaged
object) or a record that is not well formed (a bad file name, a key that is not its own) is
a miss: the object or record is removed with a warning and the image is built.

Layout: a :class:`~imagecomposer.foundation.store.Store` whose entries are
``ROOT/<name>/<digest>/{entry.json, files/...}``; the last use of each is in the store's
bookkeeping.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.cache import shared_images
from imagecomposer.cache.image_entry import (
    ENTRY,
    FILES,
    FORMAT,
    CachedFile,
    CacheKey,
    Checked,
    Entry,
    entry_key,
    load_record,
    parse_record,
    safe_name,
)
from imagecomposer.cache.image_files import (
    changed_since_checked,
    file_digests,
    link_or_copy,
    private_to_user,
    stamp,
    store_files,
)
from imagecomposer.cache.shared import ObjectStore
from imagecomposer.cache.shared_http import object_store_for
from imagecomposer.config.model import Config, default_seal_key
from imagecomposer.foundation import display
from imagecomposer.foundation.digest import (
    sparse_sha256,
    sparse_sha256_of,
    workers,
)
from imagecomposer.foundation.errors import CacheError, CommandError
from imagecomposer.foundation.seal import SealKey
from imagecomposer.foundation.staging import staged
from imagecomposer.foundation.store import Limits, Store, StoreEntry

__all__ = ["CacheKey", "CachedFile", "Entry", "ImageCache"]

log = logging.getLogger("imagecomposer.cache")

STAMPS = "checked.json"  # sealed stat stamps of the files last found intact
STAMP_KIND = "images-checked"  # what the stamps' seals name (never an entry record's)
KIND = "images"  # what the seals name
PATTERNS = ("*/*",)
# what an entry's writer returns: each file's (SHA256, sparse content digest), and whether
# the files are hard links of the very inodes hashed (then their stamps are recorded)
_Placed = tuple[Mapping[str, tuple[str, str]], bool]


class ImageCache:
    """Finished build outputs under ``root`` (see the module docstring)."""

    def __init__(self, root: Path, *, max_count: int = 5, enabled: bool = True,
                 max_size_gb: float | None = None, retention_days: float | None = None,
                 seal_key: SealKey | None = None, shared: ObjectStore | None = None) -> None:
        self.root = root
        self.shared = shared
        self.max_count = max(1, max_count)
        self.enabled = enabled
        self.seal_key = seal_key if seal_key is not None else SealKey(default_seal_key())
        self.storage = Store(root, patterns=PATTERNS, what="image cache",
                           verify=self._verify, group=lambda key: key.split("/", 1)[0],
                           limits=Limits.of(max_size_gb=max_size_gb,
                                            retention_days=retention_days,
                                            max_count=self.max_count))
        self._discarded: dict[str, str] = {}  # key digest -> why lookup discarded it

    @classmethod
    def for_config(cls, config: Config, *, enabled: bool = True) -> ImageCache:
        """The image cache of ``config`` with its limits (``storage.image_cache``)."""
        settings = config.storage.image_cache
        return cls(config.image_cache_dir, max_count=settings.max_count,
                   enabled=enabled and settings.enabled, max_size_gb=settings.max_size_gb,
                   retention_days=settings.retention_days,
                   seal_key=SealKey(config.storage.seal_key),
                   shared=object_store_for(config))

    def __repr__(self) -> str:
        return display.call("ImageCache", root=self.root, max_count=self.max_count,
                            enabled=self.enabled)

    # --- internals --------------------------------------------------------------------------

    @staticmethod
    def _read(path: Path, last_used: float | None = None) -> Entry | None:
        """The entry at ``path`` as its record says (not checked: see :meth:`_sealed`)."""
        return parse_record(path, load_record(path), last_used)

    def _sealed(self, path: Path, stored: str) -> tuple[Entry | None, str]:
        """The entry at ``path`` (key ``stored``) if its record is sealed for that key,
        else what is wrong."""
        try:
            data = load_record(path)
        except OSError as exc:
            return None, f"unreadable: {exc.strerror or exc}"
        except ValueError:
            return None, "its record is not valid JSON"
        entry = parse_record(path, data)
        if entry is None:
            return None, "not sealed: written by an older version, or its record is damaged"
        record = {k: v for k, v in data.items() if k != "seal"}
        if not self.seal_key.check(KIND, stored, record, data.get("seal")):
            return None, ("its seal does not match: the record or the seal was changed, it "
                          "was copied from another entry, or made with another key")
        return entry, ""

    def _entries(self, name: str | None = None) -> builtins.list[Entry]:
        prefix = None if name is None else safe_name(name) + "/"
        found = []
        for stored in self.storage.entries():
            if prefix is None or stored.key.startswith(prefix):
                entry = self._read(stored.path, stored.last_used)
                if entry is not None:
                    found.append(entry)
        return sorted(found, key=lambda e: (e.name, -e.last_used))

    @staticmethod
    def _damage(entry: Entry, stamps: Mapping[str, list[int]] | None = None
                ) -> tuple[str | None, dict[str, Checked], dict[str, os.stat_result]]:
        """Why ``entry`` cannot be used (None when every file is as sealed), the inode of
        each file that was checked, and the status (taken before reading) of each file that
        was hashed.

        Size and mtime first (cheap), then each file's digest (a file rewritten with its
        mtime put back is caught here), hashed through one open file: what was checked is
        exactly the inode that was read, whatever its name points to meanwhile. A file
        whose (device, inode, size, mtime, ctime) is the one ``stamps`` (sealed, see
        :meth:`_stamps`) recorded when it was last found intact, that this user owns and
        nobody else can write, is not read again: any write, truncation, ``utime`` or
        ``chmod`` since would have moved its ctime, which no one but root can set.
        """
        for f in entry.files:
            path = entry.path / FILES / f.name
            try:
                st = path.stat()
            except OSError:
                return f"{f.name} is missing", {}, {}
            if st.st_size != f.size or st.st_mtime_ns != f.mtime_ns:
                return f"{f.name} was modified (size or mtime changed)", {}, {}

        trusted = stamps or {}

        def one(f: CachedFile) -> tuple[str | None, Checked | None, os.stat_result | None]:
            try:
                with (entry.path / FILES / f.name).open("rb") as fh:
                    st = os.fstat(fh.fileno())
                    if st.st_size != f.size or st.st_mtime_ns != f.mtime_ns:
                        return f"{f.name} was modified (size or mtime changed)", None, None
                    checked = Checked(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                    if private_to_user(st) and trusted.get(f.name) == stamp(st):
                        return None, checked, None  # unchanged since it was last hashed
                    digest = sparse_sha256_of(fh)
            except OSError:
                return f"{f.name} cannot be read", None, None
            if digest != f.content:
                return f"{f.name} does not match its stored digest", None, None
            return None, checked, st

        with ThreadPoolExecutor(max_workers=workers(len(entry.files) or 1),
                                thread_name_prefix="sha256") as pool:
            results = builtins.list(pool.map(one, entry.files))
        for problem, _, _ in results:
            if problem is not None:
                return problem, {}, {}
        pairs = builtins.list(zip(entry.files, results, strict=True))
        return (None, {f.name: c for f, (_, c, _) in pairs if c is not None},
                {f.name: st for f, (_, _, st) in pairs if st is not None})

    def _stamps(self, entry: Entry, stored: str) -> dict[str, list[int]]:
        """The stat stamps (by file name) recorded when the files of ``entry`` (key
        ``stored``) were last found intact, if their seal holds for this entry and they
        were taken against the content digests the entry records; else none."""
        try:
            data = json.loads((entry.path / STAMPS).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        record = {k: v for k, v in data.items() if k != "seal"}
        if not self.seal_key.check(STAMP_KIND, stored, record, data.get("seal")):
            return {}
        files = record.get("files")
        if not isinstance(files, dict):
            return {}
        contents = {f.name: f.content for f in entry.files}
        return {name: stamp["stat"] for name, stamp in files.items()
                if isinstance(stamp, dict) and name in contents
                and stamp.get("content") == contents[name] and isinstance(stamp.get("stat"), list)}

    def _write_stamps(self, entry: Entry, stored: str, stats: Mapping[str, os.stat_result]
                      ) -> None:
        """Record (sealed) the status of the files of ``entry`` just found intact, so that
        the next lookup need not read them again while they stay that very, unchanged
        inode. Best effort: a cache this user cannot write just has no stamps."""
        previous = self._stamps(entry, stored)
        contents = {f.name: f.content for f in entry.files}
        files = {name: {"content": contents[name], "stat": stat}
                 for name, stat in previous.items()}
        files.update({name: {"content": contents[name], "stat": stamp(st)}
                      for name, st in stats.items() if name in contents})
        partial = entry.path / f".{STAMPS}.{os.getpid()}.{threading.get_ident()}"
        try:
            partial.write_text(self._stamp_text(stored, files))
            partial.replace(entry.path / STAMPS)
        except OSError as exc:
            log.debug("image cache: cannot record the check of %s: %s", entry.path, exc)
            partial.unlink(missing_ok=True)

    def _verify(self, path: Path) -> str | None:
        """The store's verification: the entry is sealed and every file is intact."""
        entry, problem = self._sealed(path, path.relative_to(self.root).as_posix())
        if entry is None:
            return problem
        return self._damage(entry)[0]  # every file read: no stamps trusted

    def remove_leftovers(self, *, dry_run: bool = False) -> builtins.list[Path]:
        """Remove the staging areas of stores that were killed (owner pid dead, or older
        than a day)."""
        return self.storage.remove_leftovers(dry_run=dry_run)

    # --- public API -------------------------------------------------------------------------

    def lookup(self, key: CacheKey) -> Entry | None:
        """The intact entry for ``key``, or None. Every file is checked against its stored
        digest first; a damaged entry is discarded (with a warning) and is a miss. Missing
        here, the entry is taken from the shared store when it has it (every file checked
        against its SHA256; ``Entry.shared`` is then True)."""
        if not self.enabled:
            return None
        self.remove_leftovers()
        entry = self._lookup_here(key)
        if entry is None and self.shared is not None and self._from_shared(key, self.shared):
            entry = self._lookup_here(key)
            if entry is not None:
                return attrs.evolve(entry, shared=True)
        return entry

    def _lookup_here(self, key: CacheKey) -> Entry | None:
        stored = entry_key(key.name, key.digest)
        path = self.storage.path(stored)
        started = time.monotonic()
        try:
            inode = path.stat().st_ino
        except OSError:
            return None
        entry, damage = self._sealed(path, stored)
        checked: dict[str, Checked] = {}
        hashed: dict[str, os.stat_result] = {}
        if entry is not None:
            found, checked, hashed = self._damage(entry, self._stamps(entry, stored))
            damage = found or ""
        if entry is None or damage:
            log.warning("image cache entry %s is damaged (%s); discarding it", path, damage)
            self._discarded[key.digest] = damage
            self.storage.remove(stored, inode=inode)
            return None
        if hashed:
            self._write_stamps(entry, stored, hashed)
        log.debug("image cache: %s %s intact (%d files checked against their sealed digests, "
                  "%d of them unchanged since their last check, in %.2f s)", entry.name,
                  entry.digest[:12], len(entry.files), len(entry.files) - len(hashed),
                  time.monotonic() - started)
        return attrs.evolve(entry, checked=checked)

    def restore(self, entry: Entry, output_dir: Path) -> builtins.list[Path] | None:
        """Put the entry's files into ``output_dir`` (replacing it atomically), the
        restored files checked first (an entry found by :meth:`lookup`). None (a miss,
        ``output_dir`` untouched) when the entry was removed meanwhile, or a file was
        changed in the cache since the lookup checked it (then it is discarded)."""
        started = time.monotonic()
        key = entry_key(entry.name, entry.digest)
        problem = None
        with self.storage.using(key) as path:
            if path is None:
                log.warning("image cache entry %s was removed before it could be restored",
                            entry.path)
                return None
            sources = [path / FILES / f.name for f in entry.files]
            try:
                with staged(output_dir) as stage:
                    link_or_copy(sources, stage)
                    problem = changed_since_checked(entry, stage)
                    if problem is not None:
                        raise _Changed
            except _Changed:
                pass
            if problem is None:
                self._restamp(entry, key, path)
        if problem is not None:
            log.warning("image cache entry %s is damaged (%s since it was checked); "
                        "discarding it", entry.path, problem)
            self._discarded[entry.digest] = problem
            self.storage.remove(key)
            return None
        self.storage.touch([key])
        log.info("image cache hit: %s %s restored to %s in %.2f s", entry.name,
                 entry.digest[:12], output_dir, time.monotonic() - started)
        return [output_dir / f.name for f in entry.files]

    def _stamp_text(self, stored: str, files: Mapping[str, Any]) -> str:
        """The sealed stamps file of entry ``stored``."""
        record: dict[str, Any] = {"files": dict(files)}
        record["seal"] = self.seal_key.seal(STAMP_KIND, stored, record)
        return json.dumps(record, sort_keys=True)

    def _restamp(self, entry: Entry, stored: str, path: Path) -> None:
        """After a restore: a hard link made (and the previous outputs' links removed)
        moved the ctime of the entry's files; record it for the files that are still the
        inode :meth:`lookup` checked, unchanged, so the next lookup need not read them."""
        stats = {}
        for f in entry.files:
            seen = entry.checked.get(f.name)
            try:
                st = (path / FILES / f.name).lstat()
            except OSError:
                return
            if seen is None or (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != (
                    seen.dev, seen.ino, seen.size, seen.mtime_ns):
                return
            stats[f.name] = st
        self._write_stamps(attrs.evolve(entry, path=path), stored, stats)

    def make_room(self, key: CacheKey) -> None:
        """Before the finalize stage of a build that will store ``key`` (it missed): evict
        now what storing it would evict (the least recently used entry of its name beyond
        ``max_count``, the expired ones), the files deleted in a background thread while
        finalize runs (unlinking a 2 GiB image took 0.6-0.8 s at the end of the build;
        :func:`imagecomposer.foundation.cleanup.wait_for_removals` waits for it). The
        evicted entries are gone for every lookup at once. A build whose finalize then
        fails has freed a place it does not use."""
        if self.enabled:
            self.storage.prune(incoming=entry_key(key.name, key.digest), background=True)

    def store(self, key: CacheKey, artifacts_dir: Path) -> Entry | None:
        """Copy every file of ``artifacts_dir`` into a new entry, then apply the limits
        (the new entry is kept)."""
        if not self.enabled:
            return None
        files = sorted(p for p in artifacts_dir.iterdir() if p.is_file())

        def place(dest: Path) -> _Placed:
            # the digests come from the build's outputs, not from the copies in the cache
            # (taken first: a hard link made read-only below changes the output's ctime)
            with ThreadPoolExecutor(max_workers=workers(len(files) or 1),
                                    thread_name_prefix="sha256") as pool:
                digests = dict(zip((p.name for p in files), pool.map(file_digests, files),
                                   strict=True))
            return digests, store_files(files, dest)

        final = self._write(key, place, f"{', '.join(p.name for p in files)}")
        entry = self._read(final)
        if entry is not None and self.shared is not None:
            self._publish_shared(entry, self.shared)
        return entry

    def _write(self, key: CacheKey, place: Callable[[Path], _Placed],
               label: str) -> Path:
        """Write the entry of ``key`` whose files ``place`` puts into the directory it is
        given (see ``_Placed``), sealed."""
        stored = entry_key(key.name, key.digest)

        def fill(stage: Path) -> None:
            (stage / FILES).mkdir(parents=True)
            digests, linked = place(stage / FILES)
            records, stamps = [], {}
            for path in sorted((stage / FILES).iterdir()):
                path.chmod(0o444)
                st = path.stat()
                full, content = digests[path.name]
                records.append(attrs.asdict(CachedFile(
                    path.name, st.st_size, full, st.st_mtime_ns, content)))
                # a hard link is the very inode just hashed: the first lookup need not
                # read it again while it stays unchanged (a reflink or copy is read once)
                stamps[path.name] = {"content": content, "stat": stamp(st)}
            if linked:
                (stage / STAMPS).write_text(self._stamp_text(stored, stamps))
            record: dict[str, Any] = {
                "format": FORMAT, "name": key.name, "digest": key.digest,
                "inputs": [list(pair) for pair in key.inputs], "files": records,
                "created": time.time()}
            record["seal"] = self.seal_key.seal(KIND, stored, record)
            (stage / ENTRY).write_text(json.dumps(record, indent=1))

        try:
            final = self.storage.write(stored, fill, meta={
                "label": f"{key.name} {key.digest[:12]}: {label}"})
        except (OSError, CommandError) as exc:
            raise CacheError(f"cannot store image in cache {self.root / safe_name(key.name)}: "
                             f"{exc}") from None
        self.storage.prune(keep={stored})
        log.info("image cache: stored %s %s", key.name, key.digest[:12])
        return final

    def _publish_shared(self, entry: Entry, shared: ObjectStore) -> None:
        """Publish ``entry`` (just stored here) to the shared store; a failure is a
        warning (the build has succeeded)."""
        try:
            published = shared_images.publish(
                shared, self.seal_key, entry.name, safe_name(entry.name), entry.digest,
                entry.inputs, [(f.name, f.size, f.sha256, entry.path / FILES / f.name)
                               for f in entry.files])
        except (OSError, CacheError) as exc:
            log.warning("image cache: could not publish %s %s to the shared store %s: %s",
                        entry.name, entry.digest[:12], shared, exc)
            return
        if published:
            log.info("image cache: published %s %s to the shared store", entry.name,
                     entry.digest[:12])

    def _from_shared(self, key: CacheKey, shared: ObjectStore) -> bool:
        """Take the entry of ``key`` from the shared store into this cache (sealed with
        this host's key) after checking its record's seal and every file against its
        SHA256; False (a miss) when the store does not have it, or its record or a file is
        damaged (then removed, with a warning), or the record is not sealed with this
        host's key (left for the hosts that have it)."""
        name = safe_name(key.name)
        try:
            files, problem = shared_images.record(shared, self.seal_key, key.name, name,
                                                  key.digest)
        except (OSError, CacheError) as exc:
            log.warning("image cache: cannot read the shared store %s: %s", shared, exc)
            return False
        if files is None:
            if problem:
                log.warning("image cache: the shared store's record of %s %s is %s; not "
                            "used (the image is built)", key.name, key.digest[:12], problem)
                self._discarded[key.digest] = f"its shared store record is {problem}"
            if problem == "damaged":
                shared.remove_index(shared_images.KIND, name, key.digest)
            return False

        def place(dest: Path) -> _Placed:
            digests = {}
            for file_name, sha256 in files:
                if not shared.copy_to(shared_images.KIND, sha256, dest / file_name):
                    raise _Damaged(file_name)
                digests[file_name] = (sha256, sparse_sha256(dest / file_name))
            return digests, False

        started = time.monotonic()
        try:
            self._write(key, place, ", ".join(n for n, _ in files) + " (shared store)")
        except _Damaged as exc:
            log.warning("image cache: %s of %s %s in the shared store is missing or damaged: "
                        "not used (the image is built)", exc, key.name, key.digest[:12])
            shared.remove_index(shared_images.KIND, name, key.digest)
            self._discarded[key.digest] = f"{exc} in the shared store is missing or damaged"
            return False
        except CacheError as exc:  # this host's cache cannot take it: the image is built
            log.warning("image cache: %s %s from the shared store not kept: %s", key.name,
                        key.digest[:12], exc)
            return False
        log.info("image cache: %s %s taken from the shared store (%d files verified) in "
                 "%.2f s", key.name, key.digest[:12], len(files), time.monotonic() - started)
        return True

    def explain_miss(self, key: CacheKey) -> str:
        if not self.enabled:
            return "image cache disabled"
        if key.digest in self._discarded:
            return (f"image cache miss: the entry for '{key.name}' was damaged "
                    f"({self._discarded[key.digest]}) and discarded")
        entries = self._entries(key.name)
        if not entries:
            return f"image cache miss: no cached image for '{key.name}'"
        old, new = dict(entries[0].inputs), dict(key.inputs)
        reasons = [f"input '{k}' changed" for k in sorted(old.keys() & new.keys())
                   if old[k] != new[k]]
        reasons += [f"input '{k}' added" for k in sorted(new.keys() - old.keys())]
        reasons += [f"input '{k}' removed" for k in sorted(old.keys() - new.keys())]
        return "image cache miss: " + "; ".join(reasons or ["unknown change"])

    def prune(self, dry_run: bool = False) -> builtins.list[Path]:
        """Remove leftovers of interrupted stores, unreadable or damaged entries (every
        file's digest is checked), and what the limits evict (``max_count`` per image,
        size, age); returns what was (or would be) removed."""
        removal = self.storage.prune(dry_run=dry_run, verify=True)
        return [e.path for e in removal.entries] + builtins.list(removal.leftovers)

    def clean(self, dry_run: bool = False) -> builtins.list[Path]:
        """Remove every entry."""
        removal = self.storage.clean(dry_run=dry_run)
        return [e.path for e in removal.entries] + builtins.list(removal.leftovers)

    def list(self) -> builtins.list[Entry]:
        """Every entry, by image name, most recently used first."""
        return self._entries()

    def entries(self) -> builtins.list[StoreEntry]:
        """The store's view: every entry with its bookkeeping."""
        return self.storage.entries()


class _Changed(Exception):
    """A staged file is not what the lookup checked: the staging is dropped."""


class _Damaged(Exception):
    """A file of a shared image is missing or does not match its SHA256."""



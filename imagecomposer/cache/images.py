"""The image cache: finished build outputs keyed by every input of the build.

A key (:class:`CacheKey`) is made by the pipeline from the typed inputs of the stages that
produce the outputs (see ``imagecomposer.pipeline.build``): a digest over them, and the
fingerprint of each input field, kept in each entry so that a miss can name the field that
changed. Entries are written to a temporary directory and renamed into
place (never a partial entry); files are stored read-only with their digests. A lookup
checks every file against its stored digest before the entry is used (reading only the data
of sparse images, see :func:`~imagecomposer.foundation.digest.sparse_sha256`): a damaged or
modified entry is discarded with a warning and the lookup is a miss. A hit restores the
outputs with a reflink, else a hard link, else a copy, into a staging directory that
atomically replaces the output directory. At most ``max_count`` entries per image name are
kept, least recently used first out, within the size and age limits of
``storage.image_cache``. The staging areas of a killed store are removed by the next
lookup, store or prune.

Layout: a :class:`~imagecomposer.foundation.store.Store` whose entries are
``ROOT/<name>/<digest>/{entry.json, files/...}``; the last use of each is in the store's
bookkeeping.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import attrs

from imagecomposer.config.model import Config
from imagecomposer.foundation import display
from imagecomposer.foundation.digest import hash_file_into, sha256_files, sparse_sha256
from imagecomposer.foundation.errors import CacheError, CommandError
from imagecomposer.foundation.runner import run
from imagecomposer.foundation.staging import staged
from imagecomposer.foundation.store import Limits, Store, StoreEntry
from imagecomposer.foundation.units import human_size

log = logging.getLogger("imagecomposer.cache")

ENTRY = "entry.json"
FILES = "files"
FORMAT = 2  # 2: files carry their sparse content digest; older entries are not used
PATTERNS = ("*/*",)


@attrs.frozen
class CacheKey:
    name: str  # image name: max_count applies per name
    digest: str
    inputs: tuple[tuple[str, str], ...]  # (input label, sha256), sorted


@attrs.frozen
class CachedFile:
    name: str
    size: int
    sha256: str
    mtime_ns: int  # as stored: a change means someone wrote through a hard link
    content: str  # sparse_sha256: checked before every restore


@attrs.frozen(repr=False)
class Entry:
    name: str
    digest: str
    path: Path
    inputs: tuple[tuple[str, str], ...]
    files: tuple[CachedFile, ...]
    created: float
    last_used: float

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def __repr__(self) -> str:
        return (f"<image cache entry {self.name} {self.digest[:12]}: "
                f"{', '.join(f.name for f in self.files)} ({human_size(self.size)})>")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "default"


def _key(name: str, digest: str) -> str:
    return f"{_safe(name)}/{digest}"


class ImageCache:
    """Finished build outputs under ``root`` (see the module docstring)."""

    def __init__(self, root: Path, *, max_count: int = 5, enabled: bool = True,
                 max_size_gb: float | None = None, retention_days: float | None = None
                 ) -> None:
        self.root = root
        self.max_count = max(1, max_count)
        self.enabled = enabled
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
                   retention_days=settings.retention_days)

    def __repr__(self) -> str:
        return display.call("ImageCache", root=self.root, max_count=self.max_count,
                            enabled=self.enabled)

    # --- internals --------------------------------------------------------------------------

    @staticmethod
    def _read(path: Path, last_used: float | None = None) -> Entry | None:
        try:
            data = json.loads((path / ENTRY).read_text())
            if data.get("format") != FORMAT:
                return None
            return Entry(data["name"], data["digest"], path,
                         tuple((str(a), str(b)) for a, b in data["inputs"]),
                         tuple(CachedFile(**f) for f in data["files"]), data["created"],
                         data["created"] if last_used is None else last_used)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _entries(self, name: str | None = None) -> builtins.list[Entry]:
        prefix = None if name is None else _safe(name) + "/"
        found = []
        for stored in self.storage.entries():
            if prefix is None or stored.key.startswith(prefix):
                entry = self._read(stored.path, stored.last_used)
                if entry is not None:
                    found.append(entry)
        return sorted(found, key=lambda e: (e.name, -e.last_used))

    @staticmethod
    def _damage(entry: Entry) -> str | None:
        """Why ``entry`` cannot be used, or None when every file is as stored.

        Size and mtime first (cheap), then each file's digest (a file rewritten with its
        mtime put back is caught here).
        """
        for f in entry.files:
            path = entry.path / FILES / f.name
            try:
                st = path.stat()
            except OSError:
                return f"{f.name} is missing"
            if st.st_size != f.size or st.st_mtime_ns != f.mtime_ns:
                return f"{f.name} was modified (size or mtime changed)"
        paths = {f.name: entry.path / FILES / f.name for f in entry.files}
        found = sha256_files(builtins.list(paths.values()), len(paths), digest=sparse_sha256)
        for f in entry.files:
            digest = found[paths[f.name]]
            if digest is None:
                return f"{f.name} cannot be read"
            if digest != f.content:
                return f"{f.name} does not match its stored digest"
        return None

    def _verify(self, path: Path) -> str | None:
        """The store's verification: the entry can be read and every file is intact."""
        entry = self._read(path)
        if entry is None:
            return "unreadable, or written by an older version"
        return self._damage(entry)

    def remove_leftovers(self, *, dry_run: bool = False) -> builtins.list[Path]:
        """Remove the staging areas of stores that were killed (owner pid dead, or older
        than a day)."""
        return self.storage.remove_leftovers(dry_run=dry_run)

    # --- public API -------------------------------------------------------------------------

    def lookup(self, key: CacheKey) -> Entry | None:
        """The intact entry for ``key``, or None. Every file is checked against its stored
        digest first; a damaged entry is discarded (with a warning) and is a miss."""
        if not self.enabled:
            return None
        self.remove_leftovers()
        path = self.storage.path(_key(key.name, key.digest))
        entry = self._read(path)
        if entry is None:
            return None
        started = time.monotonic()
        try:
            inode = entry.path.stat().st_ino
        except OSError:
            return None
        damage = self._damage(entry)
        if damage is not None:
            log.warning("image cache entry %s is damaged (%s); discarding it", entry.path,
                        damage)
            self._discarded[key.digest] = damage
            self.storage.remove(_key(key.name, key.digest), inode=inode)
            return None
        log.debug("image cache: %s %s intact (%d files checked against their digests in "
                 "%.2f s)", entry.name, entry.digest[:12], len(entry.files),
                 time.monotonic() - started)
        return entry

    def restore(self, entry: Entry, output_dir: Path) -> builtins.list[Path]:
        """Put the entry's files into ``output_dir`` (replacing it atomically)."""
        started = time.monotonic()
        key = _key(entry.name, entry.digest)
        with self.storage.using(key) as path:
            if path is None:
                raise CacheError(f"image cache entry {entry.path} was removed before it "
                                 "could be restored; build again")
            sources = [path / FILES / f.name for f in entry.files]
            with staged(output_dir) as stage:
                _link_or_copy(sources, stage)
        self.storage.touch([key])
        log.info("image cache hit: %s %s restored to %s in %.2f s", entry.name,
                 entry.digest[:12], output_dir, time.monotonic() - started)
        return [output_dir / f.name for f in entry.files]

    def store(self, key: CacheKey, artifacts_dir: Path) -> Entry | None:
        """Copy every file of ``artifacts_dir`` into a new entry, then apply the limits
        (the new entry is kept)."""
        if not self.enabled:
            return None
        files = sorted(p for p in artifacts_dir.iterdir() if p.is_file())
        stored = _key(key.name, key.digest)

        def fill(stage: Path) -> None:
            (stage / FILES).mkdir(parents=True)
            if files:
                run(["cp", "--reflink=auto", "--sparse=always", "-t", stage / FILES, *files])
            records = []
            for path in sorted((stage / FILES).iterdir()):
                path.chmod(0o444)
                digest = hashlib.sha256()
                hash_file_into(path, digest)
                st = path.stat()
                records.append(attrs.asdict(CachedFile(
                    path.name, st.st_size, digest.hexdigest(), st.st_mtime_ns,
                    sparse_sha256(path))))
            (stage / ENTRY).write_text(json.dumps({
                "format": FORMAT, "name": key.name, "digest": key.digest,
                "inputs": key.inputs, "files": records, "created": time.time()}, indent=1))

        try:
            final = self.storage.write(stored, fill, meta={
                "label": f"{key.name} {key.digest[:12]}: {', '.join(p.name for p in files)}"})
        except (OSError, CommandError) as exc:
            raise CacheError(f"cannot store image in cache {self.root / _safe(key.name)}: "
                             f"{exc}") from None
        self.storage.prune(keep={stored})
        log.info("image cache: stored %s %s", key.name, key.digest[:12])
        return self._read(final)

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


def _link_or_copy(sources: list[Path], dest: Path) -> None:
    """Reflink when the filesystem can, else hard link (O(1) for any image size), else a
    sparse copy (another filesystem)."""
    if not sources:
        return
    try:
        run(["cp", "--reflink=always", "-t", dest, *sources])
        for path in dest.iterdir():
            path.chmod(0o644)
        return
    except CommandError:
        for path in dest.iterdir():
            path.unlink()
    try:
        for src in sources:
            os.link(src, dest / src.name)
        return
    except OSError:
        for path in dest.iterdir():
            path.unlink()
    run(["cp", "--sparse=always", "-t", dest, *sources])
    for path in dest.iterdir():
        path.chmod(0o644)

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
kept, least recently used first out. Temporary directories of a killed store are removed by
the next lookup or prune.

Layout: ``ROOT/<name>/<digest>/{entry.json, used, files/...}``; a store in progress is
``ROOT/<name>/.tmp-<digest>-<pid>-<random>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import attrs

from imagecomposer.foundation.digest import hash_file_into, sha256_files, sparse_sha256
from imagecomposer.foundation.errors import CacheError, CommandError
from imagecomposer.foundation.filelock import exclusive, try_exclusive
from imagecomposer.foundation.runner import run
from imagecomposer.foundation.staging import staged

log = logging.getLogger("imagecomposer.cache")

ENTRY = "entry.json"
FILES = "files"
USED = "used"
FORMAT = 2  # 2: files carry their sparse content digest; older entries are not used
_TMP = re.compile(r"^\.tmp-[0-9a-f]+-(\d+)-[0-9a-f]+$")
DAY = 86400.0


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


@attrs.frozen
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


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "default"


class ImageCache:
    def __init__(self, root: Path, *, max_count: int = 5, enabled: bool = True) -> None:
        self.root = root
        self.max_count = max(1, max_count)
        self.enabled = enabled
        self._discarded: dict[str, str] = {}  # key digest -> why lookup discarded it

    # --- internals --------------------------------------------------------------------------

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return exclusive(self.root / ".lock")

    def _read(self, path: Path) -> Entry | None:
        try:
            data = json.loads((path / ENTRY).read_text())
            if data.get("format") != FORMAT:
                return None
            used = (path / USED).stat().st_mtime
            return Entry(data["name"], data["digest"], path,
                         tuple((str(a), str(b)) for a, b in data["inputs"]),
                         tuple(CachedFile(**f) for f in data["files"]), data["created"], used)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _entries(self, name: str | None = None) -> list[Entry]:
        if not self.root.is_dir():
            return []
        dirs = [self.root / _safe(name)] if name is not None else sorted(
            p for p in self.root.iterdir() if p.is_dir())
        found = []
        for directory in dirs:
            if not directory.is_dir():
                continue
            for path in directory.iterdir():
                if not path.name.startswith(".") and (entry := self._read(path)) is not None:
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
        found = sha256_files(list(paths.values()), len(paths), digest=sparse_sha256)
        for f in entry.files:
            digest = found[paths[f.name]]
            if digest is None:
                return f"{f.name} cannot be read"
            if digest != f.content:
                return f"{f.name} does not match its stored digest"
        return None

    def remove_leftovers(self, *, dry_run: bool = False) -> list[Path]:
        """Remove the temporary directories of stores that were killed (owner pid dead, or
        older than a day); skipped while another process holds the cache lock (storing)."""
        found: list[Path] = []
        if not self.root.is_dir():
            return found
        with try_exclusive(self.root / ".lock") as held:
            if not held:
                return found
            for directory in (p for p in self.root.iterdir() if p.is_dir()):
                for path in directory.iterdir():
                    if _is_leftover(path):
                        found.append(path)
                        if not dry_run:
                            log.info("image cache: removing %s, left by an interrupted store",
                                     path)
                            _rmtree(path)
        return found

    # --- public API -------------------------------------------------------------------------

    def lookup(self, key: CacheKey) -> Entry | None:
        """The intact entry for ``key``, or None. Every file is checked against its stored
        digest first; a damaged entry is discarded (with a warning) and is a miss."""
        if not self.enabled:
            return None
        self.remove_leftovers()
        entry = self._read(self.root / _safe(key.name) / key.digest)
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
            with self._locked(), contextlib.suppress(OSError):
                if entry.path.stat().st_ino == inode:  # not a fresh store meanwhile
                    _rmtree(entry.path)
            return None
        log.info("image cache: %s %s intact (%d files checked against their digests in "
                 "%.2f s)", entry.name, entry.digest[:12], len(entry.files),
                 time.monotonic() - started)
        return entry

    def restore(self, entry: Entry, output_dir: Path) -> list[Path]:
        """Put the entry's files into ``output_dir`` (replacing it atomically)."""
        started = time.monotonic()
        sources = [entry.path / FILES / f.name for f in entry.files]
        with staged(output_dir) as stage:
            _link_or_copy(sources, stage)
        os.utime(entry.path / USED)
        log.info("image cache hit: %s %s restored to %s in %.2f s", entry.name,
                 entry.digest[:12], output_dir, time.monotonic() - started)
        return [output_dir / f.name for f in entry.files]

    def store(self, key: CacheKey, artifacts_dir: Path) -> Entry | None:
        """Copy every file of ``artifacts_dir`` into a new entry; evict beyond max_count."""
        if not self.enabled:
            return None
        files = sorted(p for p in artifacts_dir.iterdir() if p.is_file())
        directory = self.root / _safe(key.name)
        final = directory / key.digest
        with self._locked():
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / f".tmp-{key.digest[:16]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            try:
                (tmp / FILES).mkdir(parents=True)
                if files:
                    run(["cp", "--reflink=auto", "--sparse=always", "-t", tmp / FILES, *files])
                records = []
                for path in sorted((tmp / FILES).iterdir()):
                    path.chmod(0o444)
                    digest = hashlib.sha256()
                    hash_file_into(path, digest)
                    st = path.stat()
                    records.append(attrs.asdict(CachedFile(
                        path.name, st.st_size, digest.hexdigest(), st.st_mtime_ns,
                        sparse_sha256(path))))
                (tmp / ENTRY).write_text(json.dumps({
                    "format": FORMAT, "name": key.name, "digest": key.digest,
                    "inputs": key.inputs, "files": records, "created": time.time()}, indent=1))
                (tmp / USED).touch()
                if final.exists():
                    shutil.rmtree(final)
                tmp.rename(final)
            except (OSError, CommandError) as exc:
                raise CacheError(f"cannot store image in cache {directory}: {exc}") from None
            finally:
                if tmp.exists():
                    _rmtree(tmp)
            self._evict(key.name, dry_run=False)
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

    def _evict(self, name: str, *, dry_run: bool) -> list[Path]:
        victims = [e.path for e in self._entries(name)[self.max_count:]]
        if not dry_run:
            for path in victims:
                _rmtree(path)
        return victims

    def prune(self, dry_run: bool = False) -> list[Path]:
        """Remove leftovers of interrupted stores, unreadable or damaged entries (every
        file's digest is checked), and entries beyond ``max_count`` per image; returns what
        was (or would be) removed."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        with self._locked():
            for directory in (p for p in self.root.iterdir() if p.is_dir()):
                bad: list[Path] = []
                for path in sorted(directory.iterdir()):
                    if path.name.startswith(".tmp-"):
                        if _is_leftover(path):
                            bad.append(path)
                        continue
                    entry = self._read(path)
                    damage = ("unreadable, or written by an older version" if entry is None
                              else self._damage(entry))
                    if damage is not None:
                        log.warning("image cache entry %s is damaged (%s); %s", path, damage,
                                    "would remove it" if dry_run else "removing it")
                        bad.append(path)
                if not dry_run:
                    for path in bad:
                        _rmtree(path)
                removed += bad
                names = {e.name for e in self._entries() if e.path.parent == directory}
                for name in names:
                    removed += self._evict(name, dry_run=dry_run)
        return removed

    def clean(self, dry_run: bool = False) -> list[Path]:
        """Remove every entry."""
        if not self.root.is_dir():
            return []
        with self._locked():
            removed = [p for p in self.root.iterdir() if p.is_dir()]
            if not dry_run:
                for path in removed:
                    _rmtree(path)
        return removed

    def list(self) -> list[Entry]:  # last: the name shadows the builtin in the class body
        """Every entry, by image name, most recently used first."""
        return self._entries()


def _is_leftover(path: Path) -> bool:
    """A ``.tmp-*`` store directory whose owner is dead (or that is older than a day)."""
    match = _TMP.match(path.name)
    if match is None:
        return False
    pid = int(match.group(1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    try:
        return time.time() - path.stat().st_mtime > DAY
    except FileNotFoundError:
        return False


def _rmtree(path: Path) -> None:
    """Remove an entry even though its files are read-only (the directories are not)."""
    shutil.rmtree(path, ignore_errors=True)


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

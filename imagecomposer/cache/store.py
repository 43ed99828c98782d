"""The content-addressed package store shared by every build on the machine.

Layout under ``Config.package_cache_dir``::

    objects/ab/ab12...ef.deb   the package whose SHA256 is ab12...ef (written only after
                               its hash was checked while streaming, then renamed in)
    index.json                 sha256 -> name, version, arch, size, added, last_used
    .lock                      fcntl lock: index updates and eviction are exclusive

The object files are the truth; the index only remembers names and access times for
``cache list`` and LRU eviction, and entries are reconciled against the objects on every
read. An object is trusted only after its SHA256 was checked again: every package a fetch
takes from the store is re-hashed against the lock first (a damaged or replaced entry is
evicted, with a warning, and downloaded again), and ``prune`` removes objects whose content
does not match their name. Temporary download files carry the downloading process id, so
those left behind by a killed build are recognised and removed. ``enabled=False``
(``--no-package-cache``) gives a throwaway store in the work directory, removed by
:meth:`PackageCache.close`.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.config.model import Config
from imagecomposer.families.base import Provider
from imagecomposer.foundation import display
from imagecomposer.foundation.digest import sha256_file, sha256_files
from imagecomposer.foundation.errors import (
    BuildInterrupted,
    CacheError,
    DownloadCancelled,
    ImageComposerError,
    LockError,
)
from imagecomposer.foundation.events import (
    DownloadProgress,
    Event,
    FetchFinished,
    FetchStarted,
    PackageFetched,
)
from imagecomposer.foundation.filelock import exclusive
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.foundation.http import Cancel, Http
from imagecomposer.foundation.units import human_size
from imagecomposer.lock import Lock, LockedPackage

log = logging.getLogger("imagecomposer.cache")

_PART = re.compile(r"^\..+\.part-(\d+)-")
DAY = 86400.0


@attrs.frozen
class CacheEntry:
    sha256: str
    path: Path
    size: int
    name: str = "?"
    version: str = "?"
    arch: str = "?"
    added: float = 0.0
    last_used: float = 0.0


@attrs.frozen
class Damaged:
    """A store object that does not match the lock entry naming it."""

    package: LockedPackage
    path: Path
    inode: int  # of the file that was checked
    problem: str


class PackageCache:
    """Fetch a :class:`Lock`'s packages into the store; list, prune and clean it."""

    def __init__(self, config: Config, *, enabled: bool = True, http: Http | None = None
                 ) -> None:
        self.config = config
        settings = config.storage.package_cache
        self.enabled = enabled and settings.enabled
        self.max_bytes = int(settings.max_size_gb * 1024**3)
        self.retention = settings.retention_days * DAY
        if self.enabled:
            self.root = config.package_cache_dir
        else:
            base = config.core.work_dir
            base.mkdir(parents=True, exist_ok=True)
            self.root = Path(tempfile.mkdtemp(prefix="packages-", dir=base))
        self.objects = self.root / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.http = http or Http(config.credentials, maxsize=max(config.core.parallel, 8))

    def __repr__(self) -> str:
        return display.call("PackageCache", root=self.root, enabled=self.enabled,
                            max_size=human_size(self.max_bytes),
                            retention_days=int(self.retention // DAY))

    # --- housekeeping -----------------------------------------------------------------

    def close(self) -> None:
        """Remove a throwaway store (``enabled=False``); no-op for the shared one."""
        if not self.enabled:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PackageCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return exclusive(self.root / ".lock")

    def path_for(self, package: LockedPackage) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", package.sha256):
            raise LockError(f"package {package.name} has no valid SHA256 in the lock")
        ext = "rpm" if package.kind == "rpm" else "deb"
        return self.objects / package.sha256[:2] / f"{package.sha256}.{ext}"

    def _read_index(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads((self.root / "index.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_index(self, index: dict[str, dict[str, Any]]) -> None:
        atomic_write(self.root / "index.json", json.dumps(index, indent=0, sort_keys=True))

    def _remove_stale_parts(self) -> None:
        for part in self.objects.glob("*/.*.part-*"):
            match = _PART.match(part.name)
            if match is None:
                continue
            pid = int(match.group(1))
            alive = True
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                pass
            try:  # another thread or build may rename or remove it meanwhile
                stale = not alive or (pid == os.getpid()
                                      and time.time() - part.stat().st_mtime > DAY)
            except FileNotFoundError:
                continue
            if stale:
                part.unlink(missing_ok=True)

    def list(self) -> builtins.list[CacheEntry]:
        """Every package in the store (index data reconciled with the object files)."""
        index = self._read_index()
        entries = []
        for path in sorted(self.objects.glob("*/*.*")):
            if path.name.startswith("."):
                continue
            sha = path.name.split(".", 1)[0]
            meta = index.get(sha, {})
            try:
                stat = path.stat()
            except FileNotFoundError:  # evicted by a concurrent prune
                continue
            entries.append(CacheEntry(
                sha256=sha, path=path, size=stat.st_size, name=meta.get("name", "?"),
                version=meta.get("version", "?"), arch=meta.get("arch", "?"),
                added=meta.get("added", stat.st_mtime),
                last_used=meta.get("last_used", stat.st_mtime)))
        return entries

    def _evict(self, entries: builtins.list[CacheEntry], dry_run: bool,
               damaged: builtins.list[CacheEntry] | None = None) -> builtins.list[CacheEntry]:
        """Remove ``entries`` (and their index records) under the store lock. Those in
        ``damaged`` are hashed again first: a concurrent build may have replaced one with
        a good download since it was checked."""
        if dry_run or not entries:
            return entries
        recheck = {e.path for e in damaged or ()}
        gone = []
        with self._locked():
            index = self._read_index()
            for entry in entries:
                if entry.path in recheck and _sha256_or_none(entry.path) == entry.sha256:
                    continue
                entry.path.unlink(missing_ok=True)
                index.pop(entry.sha256, None)
                gone.append(entry)
            self._write_index(index)
        return gone

    def damaged(self, entries: Iterable[CacheEntry] | None = None, *, parallel: int = 8
                ) -> builtins.list[CacheEntry]:
        """Entries whose content does not hash to their name (the SHA256 they claim).

        Hashes every object (``entries``, default all) with up to ``parallel`` threads.
        """
        candidates = self.list() if entries is None else builtins.list(entries)
        sums = sha256_files([e.path for e in candidates], parallel)
        return [e for e in candidates
                if sums[e.path] is not None and sums[e.path] != e.sha256]

    def prune(self, dry_run: bool = False, *, keep: frozenset[str] = frozenset(),
              verify: bool = True) -> builtins.list[CacheEntry]:
        """Evict damaged entries (``verify``: every object is re-hashed), then entries unused
        for ``retention_days``, then least recently used ones until the store fits
        ``max_size_gb``. ``keep`` protects SHA256s (the current build's) from the last two."""
        now = time.time()
        if not dry_run:
            self._remove_stale_parts()
        entries = sorted(self.list(), key=lambda e: e.last_used)
        damaged = self.damaged(entries, parallel=self.config.core.parallel) if verify else []
        victims = builtins.list(damaged)
        for entry in damaged:
            log.warning("package cache: %s %s at %s does not match its SHA256 (damaged or "
                        "modified); %s", entry.name, entry.version, entry.path,
                        "would remove it" if dry_run else "removing it")
        victims += [e for e in entries if e not in victims
                    and now - e.last_used > self.retention and e.sha256 not in keep]
        total = sum(e.size for e in entries if e not in victims)
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry in victims or entry.sha256 in keep:
                continue
            victims.append(entry)
            total -= entry.size
        return self._evict(victims, dry_run, damaged)

    def clean(self, dry_run: bool = False) -> builtins.list[CacheEntry]:
        """Remove every package from the store."""
        if not dry_run:
            self._remove_stale_parts()
        return self._evict(self.list(), dry_run)

    # --- fetching ---------------------------------------------------------------------

    def missing(self, lock: Lock) -> builtins.list[LockedPackage]:
        """Packages of ``lock`` the store does not hold (no object of the right size).

        Cheap: contents are checked by :meth:`fetch`, which re-hashes what it takes.
        """
        return [p for p in lock.packages if not self._present(p)]

    def _present(self, package: LockedPackage) -> bool:
        path = self.path_for(package)
        try:
            return path.stat().st_size == package.size or package.size == 0
        except FileNotFoundError:
            return False

    def verify(self, packages: Iterable[LockedPackage], *, parallel: int = 8
               ) -> builtins.list[Damaged]:
        """The entries of ``packages`` whose object exists but does not have the size and
        SHA256 the lock gives (hashed in parallel, up to ``parallel`` threads)."""
        problems: builtins.list[Damaged] = []
        to_hash: dict[Path, tuple[LockedPackage, int]] = {}
        for package in packages:
            path = self.path_for(package)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if package.size and st.st_size != package.size:
                problems.append(Damaged(package, path, st.st_ino,
                                        f"{st.st_size} bytes, the lock says {package.size}"))
            else:
                to_hash[path] = (package, st.st_ino)
        for path, digest in sha256_files(builtins.list(to_hash), parallel).items():
            package, ino = to_hash[path]
            if digest is None and path.exists():
                problems.append(Damaged(package, path, ino, "unreadable"))
            elif digest is not None and digest != package.sha256:
                problems.append(Damaged(package, path, ino, f"SHA256 {digest}, the lock says "
                                                            f"{package.sha256}"))
        return problems

    def _evict_damaged(self, problems: builtins.list[Damaged], offline: bool) -> None:
        """Evict entries that failed :meth:`verify`; offline, that is an error.

        An object is removed only if it is still the file that was hashed (another build
        may have replaced it with a good download meanwhile).
        """
        if not problems:
            return
        with self._locked():
            index = self._read_index()
            for bad in problems:
                with contextlib.suppress(FileNotFoundError):
                    if bad.path.stat().st_ino == bad.inode:
                        bad.path.unlink()
                        index.pop(bad.package.sha256, None)
            self._write_index(index)
        if offline:
            lines = "\n".join(f"  {b.package.name} {b.package.version}: {b.path}: {b.problem}"
                               for b in problems)
            raise CacheError(f"package cache: {len(problems)} cached package(s) of the lock "
                             f"are damaged or were modified (evicted; the next build "
                             f"downloads them again):\n{lines}")
        for bad in problems:
            log.warning("package cache: %s %s at %s is damaged or was modified (%s); "
                        "evicted, downloading it again", bad.package.name,
                        bad.package.version, bad.path, bad.problem)

    def fetch(self, lock: Lock, *, parallel: int = 8, provider: Provider | None = None,
              offline: bool = False, events: Callable[[Event], None] | None = None,
              ) -> dict[str, Path]:
        """Make every package of ``lock`` available; return ``{name: path in the store}``.

        Packages already in the store are re-hashed against the lock first; a damaged or
        replaced one is evicted with a warning and downloaded again. Missing packages are
        downloaded in parallel, each verified against the lock's SHA256 while streaming.
        The first failure cancels the rest (none starts after it, running ones stop at
        once) and is raised alone; the store is left consistent (completed downloads stay,
        partial ones are removed). ``offline=True`` fails with :class:`CacheError` if
        anything would be downloaded, a damaged entry included.
        """
        start = time.monotonic()
        emit = _serialized(events)
        self._remove_stale_parts()
        self._evict_damaged(self.verify(lock.packages, parallel=parallel), offline)
        todo = self.missing(lock)
        if offline and todo:
            names = ", ".join(p.name for p in todo[:10])
            raise CacheError(f"offline: {len(todo)} package(s) of the lock are not in the "
                             f"package cache ({names}{', ...' if len(todo) > 10 else ''})")
        emit(FetchStarted(len(lock.packages), len(lock.packages) - len(todo), len(todo),
                          sum(p.size for p in todo)))
        for package in lock.packages:
            if package not in todo:
                emit(PackageFetched(package.name, self.path_for(package), package.size, False))
        self._download_all(todo, parallel, emit)
        result = {p.name: self.path_for(p) for p in lock.packages}
        if provider is not None:
            for package in lock.packages:
                provider.verify_package(package, result[package.name])
        self._touch(lock, downloaded={p.sha256 for p in todo})
        emit(FetchFinished(len(todo), sum(p.size for p in todo),
                           len(lock.packages) - len(todo), time.monotonic() - start))
        if self.enabled:
            self.prune(keep=frozenset(p.sha256 for p in lock.packages), verify=False)
        return result

    def _download_all(self, todo: builtins.list[LockedPackage], parallel: int,
                      emit: Callable[[Event], None]) -> None:
        if not todo:
            return
        cancel = Cancel()
        failures: builtins.list[BaseException] = []  # in the order they happened

        def one(package: LockedPackage) -> None:
            cancel.check(package.url)  # a queued transfer never starts after a failure
            dest = self.path_for(package)
            try:
                self.http.download(package.url, dest, sha256=package.sha256,
                                   size=package.size or None, cancel=cancel,
                                   on_bytes=lambda n: emit(DownloadProgress(package.name, n)))
            except DownloadCancelled:
                raise
            except BaseException as exc:
                failures.append(exc)
                cancel.set()  # here, before this worker can take the next package
                raise
            emit(PackageFetched(package.name, dest, package.size, True))

        pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="fetch")
        futures: builtins.list[Future[None]] = [pool.submit(one, p) for p in todo]
        try:
            # in slices: an interrupt raised by another thread (_thread.interrupt_main, a
            # timeout) is seen within 0.25 s, not when the next download ends
            while wait(futures, timeout=0.25, return_when=FIRST_EXCEPTION).not_done \
                    and not failures:
                pass
        except KeyboardInterrupt:
            cancel.set()
            raise BuildInterrupted("Interrupted while downloading packages; partial "
                                   "downloads were removed") from None
        finally:
            cancel.set()  # all done on success; stops the others otherwise
            pool.shutdown(wait=True, cancel_futures=True)
        if failures:
            raise _as_error(failures[0])
        if not all(f.done() and not f.cancelled() and f.exception() is None
                   for f in futures):  # pragma: no cover - only a failure cancels
            raise CacheError("package downloads were cancelled")

    def _touch(self, lock: Lock, downloaded: set[str]) -> None:
        now = time.time()
        with self._locked():
            index = self._read_index()
            for package in lock.packages:
                meta = index.setdefault(package.sha256, {"added": now})
                meta.update(name=package.name, version=package.version, arch=package.arch,
                            size=package.size, last_used=now)
                if package.sha256 in downloaded:
                    meta["added"] = now
            self._write_index(index)


def _sha256_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def _as_error(exc: BaseException) -> BaseException:
    if isinstance(exc, ImageComposerError):
        return exc
    return CacheError(f"download failed: {exc}")


def _serialized(events: Callable[[Event], None] | None) -> Callable[[Event], None]:
    lock = threading.Lock()

    def emit(event: Event) -> None:
        if events is not None:
            with lock:
                events(event)

    return emit

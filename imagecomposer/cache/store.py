"""The content-addressed package store shared by every build on the machine.

A :class:`~imagecomposer.foundation.store.Store` under ``Config.package_cache_dir``::

    objects/ab/ab12...ef.deb   the package whose SHA256 is ab12...ef (downloaded into the
                               store's staging area, its hash checked while streaming, then
                               renamed in)
    .store.json                bookkeeping: per object the package's name, version and arch
                               (for ``cache list``), when it was added and last used

The object files are the truth; the bookkeeping is reconciled against them on every read.
An object is trusted only after its SHA256 was checked again: every package a fetch takes
from the store is re-hashed against the lock first (a damaged or replaced entry is evicted,
with a warning, and downloaded again), and ``prune`` removes objects whose content does not
match their name. Downloads of a killed build are leftovers of the store (recognised by
their dead pid) and removed. ``enabled=False`` (``--no-package-cache``) gives a throwaway
store in the work directory, removed by :meth:`PackageCache.close`. Nothing is created
before the first download.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path

import attrs

from imagecomposer.cache.shared_http import object_store_for
from imagecomposer.config.model import Config
from imagecomposer.families.base import Provider
from imagecomposer.families.registry import family
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
from imagecomposer.foundation.http import Cancel, Http
from imagecomposer.foundation.store import Limits, Store, StoreEntry
from imagecomposer.foundation.units import human_size
from imagecomposer.lock import Lock, LockedPackage

log = logging.getLogger("imagecomposer.cache")

PATTERNS = ("objects/*/*",)
SETTING = "core.cache_dir (or $IMAGECOMPOSER_CACHE_DIR)"


@attrs.frozen(repr=False)
class CacheEntry:
    sha256: str
    path: Path
    size: int
    name: str = "?"
    version: str = "?"
    arch: str = "?"
    added: float = 0.0
    last_used: float = 0.0

    def __repr__(self) -> str:
        return f"<CacheEntry {self.name} {self.version} {self.arch} {human_size(self.size)}>"


@attrs.frozen
class Damaged:
    """A store object that does not match the lock entry naming it."""

    package: LockedPackage
    path: Path
    inode: int  # of the file that was checked
    problem: str


def matches_its_name(path: Path) -> str | None:
    """The verification of a package object: its content hashes to its name."""
    digest = sha256_file(path)
    if digest == path.name.split(".", 1)[0]:
        return None
    return f"its SHA256 is {digest}: damaged or modified"


def package_store(root: Path, config: Config, *, what: str = "package cache",
                  setting: str = SETTING) -> Store:
    settings = config.storage.package_cache
    return Store(root, patterns=PATTERNS, verify=matches_its_name, what=what,
                 setting=setting, limits=Limits.of(max_size_gb=settings.max_size_gb,
                                                   retention_days=settings.retention_days))


def _key(package: LockedPackage) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", package.sha256):
        raise LockError(f"package {package.name} has no valid SHA256 in the lock")
    ext = family(package.kind).package_extension
    return f"objects/{package.sha256[:2]}/{package.sha256}.{ext}"


def _entry(entry: StoreEntry) -> CacheEntry:
    meta = entry.meta
    return CacheEntry(sha256=entry.key.rsplit("/", 1)[-1].split(".", 1)[0], path=entry.path,
                      size=entry.size, name=str(meta.get("name", "?")),
                      version=str(meta.get("version", "?")), arch=str(meta.get("arch", "?")),
                      added=entry.created, last_used=entry.last_used)


class PackageCache:
    """Fetch a :class:`Lock`'s packages into the store; list, prune and clean it."""

    def __init__(self, config: Config, *, enabled: bool = True, http: Http | None = None
                 ) -> None:
        self.config = config
        self.enabled = enabled and config.storage.package_cache.enabled
        if self.enabled:
            self.root = config.package_cache_dir
            self.storage = package_store(self.root, config)
        else:  # created on the first download, removed by close()
            self.root = config.core.work_dir / f"packages-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self.storage = package_store(self.root, config, what="throwaway package store",
                                       setting="core.work_dir (or $IMAGECOMPOSER_WORK_DIR)")
        self.objects = self.root / "objects"
        self._http = http
        self.shared = object_store_for(config)

    @property
    def http(self) -> Http:
        if self._http is None:
            self._http = Http(self.config.credentials, maxsize=max(self.config.core.parallel, 8))
        return self._http

    def __repr__(self) -> str:
        settings = self.config.storage.package_cache
        return display.call("PackageCache", root=self.root, enabled=self.enabled,
                            max_size=human_size(int(settings.max_size_gb * 1024**3)),
                            retention_days=settings.retention_days)

    # --- housekeeping -----------------------------------------------------------------

    def close(self) -> None:
        """Remove a throwaway store (``enabled=False``); no-op for the shared one."""
        if not self.enabled:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PackageCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path_for(self, package: LockedPackage) -> Path:
        return self.storage.path(_key(package))

    def list(self) -> builtins.list[CacheEntry]:
        """Every package in the store (bookkeeping reconciled with the object files)."""
        return [_entry(e) for e in self.storage.entries()]

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
        keys = {e.key for e in self.storage.entries()
                if _entry(e).sha256 in keep} if keep else set()
        removal = self.storage.prune(dry_run=dry_run, keep=keys, verify=verify,
                                   parallel=self.config.core.parallel)
        return [_entry(e) for e in removal.entries]

    def clean(self, dry_run: bool = False) -> builtins.list[CacheEntry]:
        """Remove every package from the store."""
        return [_entry(e) for e in self.storage.clean(dry_run=dry_run).entries]

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
        for bad in problems:
            self.storage.remove(_key(bad.package), inode=bad.inode)
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
        self.storage.remove_leftovers()
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
        self._touch(lock)
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
        http = self.http
        shared = self.shared

        def one(package: LockedPackage) -> None:
            cancel.check(package.url)  # a queued transfer never starts after a failure

            ext = family(package.kind).package_extension

            def download(dest: Path) -> None:
                if shared is not None and shared.copy_to("packages", package.sha256, dest,
                                                         ext):
                    log.debug("package %s taken from the shared store", package.name)
                    return
                http.download(package.url, dest, sha256=package.sha256,
                              size=package.size or None, cancel=cancel,
                              on_bytes=lambda n: emit(DownloadProgress(package.name, n)))

            try:
                # one host of those sharing the store downloads it; the others copy it
                with (shared.exclusive("packages", package.sha256) if shared is not None
                      else contextlib.nullcontext()):
                    dest = self.storage.write(_key(package), download, record=False)
                    if shared is not None:
                        shared.publish("packages", package.sha256, dest, ext)
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

    def _touch(self, lock: Lock) -> None:
        self.storage.touch([_key(p) for p in lock.packages],
                         meta={_key(p): _meta(p) for p in lock.packages})


def _meta(package: LockedPackage) -> dict[str, str]:
    return {"name": package.name, "version": package.version, "arch": package.arch,
            "label": f"{package.name} {package.version} {package.arch}"}


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

"""The installed-tree cache: a package installation is reused when only configuration changed.

Keyed by the lock's hash and the build epoch (``Composer.tree_key``; plus a format tag), so
any change in the package set or the epoch misses. An entry is a plain directory copy of the
tree made with ``cp -a --reflink=auto``: restoring it costs ~1.2 s for a 340 MB bootable
Debian tree on ext4 here (reflinks make it nearly free on btrfs/XFS), against ~1.8 s to
unpack a zstd tarball of it (119 MB) — speed wins over the disk space (see docs/compose.md),
so the cache is pruned: ``storage.tree_cache`` limits the number of trees, their total size
and their age (least recently used first out).
A tree its caller never writes again (the pipeline's: it configures a copy) is stored by
hard links instead (``store(link=True)``), a copy where linking fails.

A :class:`~imagecomposer.foundation.store.Store` under ``Config.tree_cache_dir`` whose
entries are ``v2-<lock hash>-e<epoch>/{tree/, manifest, seal.json}``: the tree, its content
manifest (:mod:`imagecomposer.cache.manifest`: every path with its type, mode, owner,
size, SHA256, link target, device numbers and extended attributes), computed from the
source tree while it is copied, and a seal over the manifest's SHA256
(:mod:`imagecomposer.foundation.seal`, a key outside the cache directory). A restore checks
the seal, copies the tree, then checks the copy against the manifest: a tree modified in
the cache (even with sizes and times kept, and its manifest rewritten to match) is a miss
with one warning naming the first path that differs, and the entry is discarded. Entries of
the older format (``v1-*``, not sealed) are discarded when met and by ``prune``.

An entry is copied into the store's staging area and renamed into place only when complete,
so a reader never sees a partial entry; leftovers of a killed writer are removed by the next
store, prune, and at the start of every build. A tree being restored is in use and never
evicted. Trees never contain mount points (chroot mounts live in a private namespace, see
:mod:`imagecomposer.foundation.sandbox`), so removing one is safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imagecomposer.cache import manifest
from imagecomposer.config.model import Config, default_seal_key
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import CacheError, CommandError
from imagecomposer.foundation.seal import SealKey
from imagecomposer.foundation.store import NO_LIMITS, Limits, Store

log = logging.getLogger(__name__)

FORMAT = "v2"
OLD_FORMATS = ("v1",)  # not sealed: discarded when met
KIND = "trees"  # what the seals name
TREE, MANIFEST, SEAL = "tree", "manifest", "seal.json"


class TreeCache:
    """Installed trees under ``directory``, one sub-directory per key, sealed with
    ``seal_key`` (default: :func:`~imagecomposer.config.model.default_seal_key`)."""

    def __init__(self, directory: Path, *, enabled: bool = True,
                 limits: Limits = NO_LIMITS, seal_key: SealKey | None = None,
                 parallel: int = 8) -> None:
        self.directory = directory
        self.enabled = enabled
        self.seal_key = seal_key if seal_key is not None else SealKey(default_seal_key())
        self.parallel = parallel
        self.storage = Store(directory, patterns=tuple(f"{f}-*" for f in (FORMAT, *OLD_FORMATS)),
                             limits=limits, verify=self._verify, what="installed-tree cache")

    @classmethod
    def for_config(cls, config: Config) -> TreeCache:
        settings = config.storage.tree_cache
        return cls(config.tree_cache_dir, enabled=settings.enabled, limits=Limits.of(
            max_size_gb=settings.max_size_gb, retention_days=settings.retention_days,
            max_count=settings.max_count), seal_key=SealKey(config.storage.seal_key),
            parallel=config.core.parallel)

    def __repr__(self) -> str:
        return f"<TreeCache at {self.directory}{'' if self.enabled else ' (disabled)'}>"

    def _key(self, key: str, form: str = FORMAT) -> str:
        return f"{form}-{key}"

    def entry(self, key: str) -> Path:
        """The entry directory of ``key`` (the tree is its ``tree/``)."""
        return self.storage.path(self._key(key))

    def lookup(self, key: str) -> Path | None:
        """The entry of ``key`` if there is one (its content is checked by a restore).

        An entry not owned by this process's user was written in another id
        space: by root while this build runs in a user namespace (rootless), or the
        reverse, in a cache directory both use. Its owners would be wrong here (a root
        build's files are nobody's in the namespace, a rootless build's are the user's
        subordinate ids outside it), so it is not used."""
        if not self.enabled:
            return None
        path = self.entry(key)
        try:
            info = path.stat()
        except OSError:
            return None
        if not stat.S_ISDIR(info.st_mode) or not (path / TREE).is_dir():
            return None
        if info.st_uid != os.geteuid():
            log.info("installed-tree cache: %s belongs to uid %d, not to this build's user "
                     "(%d): written by root or in a user namespace other than this build's; "
                     "not using it", path, info.st_uid, os.geteuid())
            return None
        return path

    # --- the seal -----------------------------------------------------------------------

    def _sealed_manifest(self, entry: Path, stored: str) -> tuple[list[manifest.Record] | None,
                                                                  str]:
        """The manifest of ``entry`` (key ``stored``) if its seal holds, else what is
        wrong."""
        try:
            data = (entry / MANIFEST).read_bytes()
            seal = json.loads((entry / SEAL).read_text())
        except FileNotFoundError as exc:
            return None, f"not sealed: no {Path(exc.filename or '').name}"
        except (OSError, ValueError) as exc:
            return None, f"unreadable: {getattr(exc, 'strerror', None) or exc}"
        if not isinstance(seal, dict):
            return None, "its seal is not a seal record"
        record = {"manifest": hashlib.sha256(data).hexdigest(), "paths": seal.get("paths")}
        if not self.seal_key.check(KIND, stored, record, seal.get("seal")):
            return None, "its seal does not match: the manifest or the seal was changed, " \
                         "it was copied from another entry, or made with another key"
        try:
            return manifest.decode(data), ""
        except ValueError as exc:
            return None, str(exc)

    def _verify(self, path: Path) -> str | None:
        """The store's verification (``cache prune``): sealed, and the tree as sealed."""
        stored = path.name
        if not stored.startswith(f"{FORMAT}-"):
            return "not sealed: written by an older version"
        expected, problem = self._sealed_manifest(path, stored)
        if expected is None:
            return problem
        return manifest.first_difference(
            expected, manifest.of_tree(path / TREE, parallel=self.parallel))

    def _discard(self, stored: str, problem: str, inode: int | None = None) -> None:
        log.warning("installed-tree cache entry %s is damaged (%s); discarding it and "
                    "installing the packages", self.storage.path(stored), problem)
        self.storage.remove(stored, inode=inode)  # not a good copy another build stored since

    # --- use ----------------------------------------------------------------------------

    def restore(self, key: str, dest: Path) -> bool:
        """Copy the tree of entry ``key`` to the new directory ``dest`` and check the copy
        against the sealed manifest; False on a miss: no entry, or one that is not sealed,
        whose seal does not hold, or whose tree differs (then it is discarded with a
        warning and ``dest`` is left absent)."""
        if not self.enabled:
            return False
        for old in OLD_FORMATS:
            if self.storage.exists(self._key(key, old)):
                self._discard(self._key(key, old), "not sealed: written by an older version")
        if self.lookup(key) is None:
            return False
        if dest.exists() and any(dest.iterdir()):
            raise CacheError(f"cannot restore cached tree into non-empty {dest}")
        stored = self._key(key)
        start = time.monotonic()
        with self.storage.using(stored) as entry:
            if entry is None:  # evicted since the lookup
                return False
            inode = entry.lstat().st_ino
            expected, problem = self._sealed_manifest(entry, stored)
            if expected is not None:
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.exists():
                    dest.rmdir()
                copy_tree(entry / TREE, dest)
        if expected is None:
            self._discard(stored, problem, inode)
            return False
        copied = time.monotonic()
        difference = manifest.first_difference(
            expected, manifest.of_tree(dest, parallel=self.parallel))
        if difference is not None:
            shutil.rmtree(dest)
            self._discard(stored, f"the tree does not match its sealed manifest: {difference}",
                          inode)
            return False
        self.storage.touch([stored])
        now = time.monotonic()
        log.debug("restored installed tree %s from the cache in %.2f s (copy %.2f s, checked "
                  "%d paths against the sealed manifest in %.2f s)", key[:12], now - start,
                  copied - start, len(expected), now - copied)
        return True

    def store(self, key: str, tree: Path, *, link: bool = False) -> Path | None:
        """Copy ``tree`` into the cache under ``key`` atomically with its sealed manifest
        (made from ``tree`` while it is copied), then apply the limits (the new entry is
        kept); return the entry (None when the cache is disabled).

        ``link``: the caller never writes into ``tree`` again (the pipeline configures a
        copy of it), so its files are hard-linked into the entry instead of copied (~0.3 s
        instead of 2-3 s for a minimal Debian tree); a copy where linking fails (another
        filesystem). A write into ``tree`` anyway would change the entry: the restore's
        check against the sealed manifest refuses it (a miss with a warning)."""
        if not self.enabled:
            return None
        stored = self._key(key)

        def fill(staged: Path) -> None:
            staged.mkdir()
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="manifest") as pool:
                made = pool.submit(manifest.of_tree, tree, parallel=self.parallel)
                if not (link and link_tree(tree, staged / TREE)):
                    copy_tree(tree, staged / TREE)
                records = made.result()
            data = manifest.encode(records)
            record = {"manifest": hashlib.sha256(data).hexdigest(), "paths": len(records)}
            (staged / MANIFEST).write_bytes(data)
            (staged / SEAL).write_text(json.dumps(
                {**record, "seal": self.seal_key.seal(KIND, stored, record)}))

        final = self.storage.write(stored, fill, meta={"label": f"lock {key[:16]}"},
                                   replace=False)
        self.prune(keep=key)
        return final

    def prune(self, *, dry_run: bool = False, keep: str | None = None) -> list[Path]:
        """Apply the limits (``keep``: a key never evicted); return what was removed."""
        protected = {self._key(keep)} if keep is not None else set()
        removal = self.storage.prune(dry_run=dry_run, keep=protected)
        return [e.path for e in removal.entries]

    def remove_stale(self) -> None:
        """Remove the partial entries of writers that are gone."""
        self.storage.remove_leftovers()


def copy_tree(source: Path, dest: Path) -> None:
    """A faithful copy (owners, modes, hard links, xattrs, device nodes); reflinks if possible."""
    runner.run(["cp", "-a", "--reflink=auto", "--", str(source), str(dest)],
               what=f"copying the tree {source}")


def link_tree(source: Path, dest: Path) -> bool:
    """``dest`` made of hard links to the files of ``source`` (directories copied with
    their owners, modes, times and xattrs); False (nothing left at ``dest``) when the
    filesystem or the permissions do not allow it."""
    try:
        runner.run(["cp", "-a", "--link", "--", str(source), str(dest)],
                   what=f"linking the tree {source}")
    except CommandError as exc:
        log.debug("cannot hard-link %s into the tree cache (%s): copying it", source, exc)
        if dest.exists():
            shutil.rmtree(dest)
        return False
    return True

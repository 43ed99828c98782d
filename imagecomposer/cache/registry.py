"""Every cache of one configuration behind one API: ``Caches(config).list()``, ``.prune()``,
``.clean()`` (what ``imagecomposer cache list|prune|clean`` call).

Each cache is a :class:`~imagecomposer.foundation.store.Store` with its limits from
``storage.<name>_cache``; listing and removing go through the store, so ``list`` and
``clean(dry_run=True)`` count the same entries, and ``prune`` checks every entry with the
cache's own verification before the limits apply. Nothing is created by listing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from imagecomposer.cache.images import ImageCache
from imagecomposer.cache.initramfs import InitramfsCache
from imagecomposer.cache.report import CacheInfo, CacheListing, CacheRemoval
from imagecomposer.cache.store import package_store
from imagecomposer.cache.trees import TreeCache
from imagecomposer.config.model import Config
from imagecomposer.families.metadata import metadata_limits, metadata_storage
from imagecomposer.foundation.errors import UsageError
from imagecomposer.foundation.seal import SealKey
from imagecomposer.foundation.settings import CACHE_NAMES
from imagecomposer.foundation.store import Store


@attrs.frozen
class CacheKind:
    name: str
    description: str
    storage: Callable[[Config], Store]
    enabled: Callable[[Config], bool]
    per: str = ""  # what max_count counts per


KINDS: tuple[CacheKind, ...] = (
    CacheKind("packages", "downloaded packages",
              lambda c: package_store(c.package_cache_dir, c),
              lambda c: c.storage.package_cache.enabled),
    CacheKind("metadata", "repository metadata and parsed indexes",
              lambda c: metadata_storage(c.metadata_cache_dir, metadata_limits(c),
                                         SealKey(c.storage.seal_key)),
              lambda c: c.storage.metadata_cache.enabled),
    CacheKind("trees", "installed package trees, one per lock",
              lambda c: TreeCache.for_config(c).storage,
              lambda c: c.storage.tree_cache.enabled),
    CacheKind("initramfs", "generated initramfs images",
              lambda c: InitramfsCache.for_config(c).storage,
              lambda c: c.storage.initramfs_cache.enabled),
    CacheKind("images", "finished build outputs",
              lambda c: ImageCache.for_config(c).storage,
              lambda c: c.storage.image_cache.enabled, per="image"),
)
NAMES = CACHE_NAMES
assert tuple(kind.name for kind in KINDS) == NAMES, "cache kinds and settings disagree"


class Caches:
    """The caches of ``config``: ``packages``, ``metadata``, ``trees``, ``initramfs``,
    ``images``. ``only`` selects some of them by name (all by default)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def __repr__(self) -> str:
        return f"<Caches in {self.config.core.cache_dir}: {', '.join(NAMES)}>"

    def _kinds(self, only: Iterable[str] | None) -> list[CacheKind]:
        if only is None:
            return list(KINDS)
        wanted = list(dict.fromkeys(only))
        unknown = [name for name in wanted if name not in NAMES]
        if unknown:
            raise UsageError(f"unknown cache {', '.join(map(repr, unknown))} "
                             f"(caches: {', '.join(NAMES)})")
        return [kind for kind in KINDS if kind.name in wanted]

    def storage(self, name: str) -> Store:
        """The store behind cache ``name``."""
        return self._kinds([name])[0].storage(self.config)

    def list(self, only: Iterable[str] | None = None) -> CacheListing:
        caches = []
        for kind in self._kinds(only):
            store = kind.storage(self.config)
            caches.append(CacheInfo(kind.name, kind.description, store.root,
                                    kind.enabled(self.config), store.limits,
                                    tuple(store.entries()), kind.per))
        return CacheListing(tuple(caches))

    def remove_leftovers(self) -> None:
        """Remove the staging areas of killed writers in every cache (cheap: a directory
        listing each; the pipeline does it before every build)."""
        for kind in KINDS:
            kind.storage(self.config).remove_leftovers()

    def prune(self, dry_run: bool = False, only: Iterable[str] | None = None) -> CacheRemoval:
        """Remove leftovers of interrupted writes and damaged entries (every entry is
        checked), then what each cache's limits evict."""
        parallel = self.config.core.parallel
        return CacheRemoval("prune", dry_run, tuple(
            (kind.name, kind.storage(self.config).prune(dry_run=dry_run, verify=True,
                                                         parallel=parallel))
            for kind in self._kinds(only)))

    def clean(self, dry_run: bool = False, only: Iterable[str] | None = None) -> CacheRemoval:
        """Remove every entry (but those being read) and every leftover."""
        return CacheRemoval("clean", dry_run, tuple(
            (kind.name, kind.storage(self.config).clean(dry_run=dry_run))
            for kind in self._kinds(only)))

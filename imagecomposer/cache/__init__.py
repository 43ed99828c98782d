"""The caches: packages, repository metadata (kept by the families layer), installed trees,
initramfs images and finished images, each a :class:`~imagecomposer.foundation.store.Store`;
:class:`Caches` lists, prunes and cleans all of them."""

from imagecomposer.cache.images import ImageCache
from imagecomposer.cache.initramfs import InitramfsCache
from imagecomposer.cache.registry import NAMES, Caches
from imagecomposer.cache.report import CacheInfo, CacheListing, CacheRemoval
from imagecomposer.cache.store import CacheEntry, PackageCache
from imagecomposer.cache.trees import TreeCache

__all__ = ["NAMES", "CacheEntry", "CacheInfo", "CacheListing", "CacheRemoval", "Caches",
           "ImageCache", "InitramfsCache", "PackageCache", "TreeCache"]

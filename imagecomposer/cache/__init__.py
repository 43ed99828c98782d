"""The package cache: a content-addressed store of verified packages shared by builds."""

from imagecomposer.cache.report import format_entries, format_images
from imagecomposer.cache.store import CacheEntry, PackageCache

__all__ = ["CacheEntry", "PackageCache", "format_entries", "format_images"]

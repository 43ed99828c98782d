"""The initramfs cache: generated initramfs images by the hash of what they were built from.

A :class:`~imagecomposer.foundation.store.Store` under ``Config.initramfs_cache_dir`` whose
entries are directories ``<key>/`` holding one image per kernel (``initrd.img-<version>``).
The key is computed by the composer (:mod:`imagecomposer.compose.initramfs_cache`, which
knows what initramfs-tools reads); this module only keeps the images: an entry is written
atomically, is used only when it holds every image asked for, is in use (never evicted)
while it is copied out, and ``storage.initramfs_cache`` limits the number of entries,
their size and their age.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from imagecomposer.config.model import Config
from imagecomposer.foundation.store import NO_LIMITS, Limits, Store

log = logging.getLogger(__name__)


class InitramfsCache:
    def __init__(self, directory: Path, *, enabled: bool = True,
                 limits: Limits = NO_LIMITS) -> None:
        self.directory = directory
        self.enabled = enabled
        self.storage = Store(directory, patterns=("*",), limits=limits,
                             what="initramfs cache")

    @classmethod
    def for_config(cls, config: Config) -> InitramfsCache:
        settings = config.storage.initramfs_cache
        return cls(config.initramfs_cache_dir, enabled=settings.enabled, limits=Limits.of(
            max_size_gb=settings.max_size_gb, retention_days=settings.retention_days,
            max_count=settings.max_count))

    def __repr__(self) -> str:
        return f"<InitramfsCache at {self.directory}{'' if self.enabled else ' (disabled)'}>"

    @contextlib.contextmanager
    def images(self, key: str, names: Sequence[str]) -> Iterator[Path | None]:
        """The entry ``key`` holding every image in ``names``, held in use for the
        ``with`` block; None on a miss."""
        if not self.enabled:
            yield None
            return

        def complete(entry: Path) -> str | None:
            missing = [n for n in names if not (entry / n).is_file()]
            return f"{', '.join(missing)} missing" if missing else None

        with self.storage.using(key) as entry:
            if entry is None or self.storage.get(key, check=complete) is None:
                yield None
            else:
                yield entry

    def store(self, key: str, fill: Callable[[Path], object], *, label: str = "") -> None:
        """Write entry ``key`` with ``fill(directory)`` atomically, then apply the limits
        (the new entry is kept). No-op when the cache is disabled."""
        if not self.enabled:
            return
        self.storage.write(key, fill, meta={"label": f"{key[:12]} {label}".rstrip()})
        self.storage.prune(keep={key})

"""The initramfs cache: generated initramfs images by the hash of what they were built from.

A :class:`~imagecomposer.foundation.store.Store` under ``Config.initramfs_cache_dir`` whose
entries are directories ``<key>/`` holding one image per kernel (``initrd.img-<version>``)
and ``seal.json``: the SHA256 of every image, sealed with a key kept outside the cache
directory (:mod:`imagecomposer.foundation.seal`). The key is computed by the composer
(:mod:`imagecomposer.compose.initramfs_cache`, which knows what initramfs-tools reads); this
module only keeps the images. An entry is written atomically from the images' bytes (their
digests are those of the bytes given, not of the copies in the cache); it is used only when
its seal holds and it holds every image asked for, each read once and checked against its
sealed SHA256 (what is returned is exactly what was checked). An entry that is not sealed,
whose seal does not hold or whose images differ is discarded with a warning: a miss.
Entries are in use (never evicted) while they are read, and ``storage.initramfs_cache``
limits the number of entries, their size and their age.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from imagecomposer.config.model import Config, default_seal_key
from imagecomposer.foundation.seal import SealKey
from imagecomposer.foundation.store import NO_LIMITS, Limits, Store

log = logging.getLogger(__name__)

KIND = "initramfs"  # what the seals name
SEAL = "seal.json"


class InitramfsCache:
    def __init__(self, directory: Path, *, enabled: bool = True,
                 limits: Limits = NO_LIMITS, seal_key: SealKey | None = None) -> None:
        self.directory = directory
        self.enabled = enabled
        self.seal_key = seal_key if seal_key is not None else SealKey(default_seal_key())
        self.storage = Store(directory, patterns=("*",), limits=limits, verify=self._verify,
                             what="initramfs cache")

    @classmethod
    def for_config(cls, config: Config) -> InitramfsCache:
        settings = config.storage.initramfs_cache
        return cls(config.initramfs_cache_dir, enabled=settings.enabled, limits=Limits.of(
            max_size_gb=settings.max_size_gb, retention_days=settings.retention_days,
            max_count=settings.max_count), seal_key=SealKey(config.storage.seal_key))

    def __repr__(self) -> str:
        return f"<InitramfsCache at {self.directory}{'' if self.enabled else ' (disabled)'}>"

    def _sealed(self, entry: Path, key: str) -> tuple[dict[str, str] | None, str]:
        """``{image name: SHA256}`` of entry ``key`` if its seal holds, else what is wrong."""
        try:
            data = json.loads((entry / SEAL).read_text())
        except FileNotFoundError:
            return None, "not sealed: no seal.json"
        except (OSError, ValueError) as exc:
            return None, f"its seal is unreadable: {getattr(exc, 'strerror', None) or exc}"
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict) or \
                not self.seal_key.check(KIND, key, {"files": files}, data.get("seal")):
            return None, ("its seal does not match: the digests or the seal were changed, "
                          "it was copied from another entry, or made with another key")
        return {str(k): str(v) for k, v in files.items()}, ""

    def _verify(self, path: Path) -> str | None:
        """The store's verification (``cache prune``): sealed, every image as sealed."""
        files, problem = self._sealed(path, path.name)
        if files is None:
            return problem
        for name, digest in sorted(files.items()):
            if hashlib.sha256((path / name).read_bytes()).hexdigest() != digest:
                return f"{name} does not match its sealed SHA256"
        return None

    def load(self, key: str, names: Sequence[str]) -> dict[str, bytes] | None:
        """The images ``names`` of entry ``key``, each checked against its sealed SHA256;
        None on a miss (no entry, or one that is incomplete, not sealed, or damaged: that
        one is discarded with a warning)."""
        if not self.enabled:
            return None
        problem = None
        images: dict[str, bytes] = {}
        with self.storage.using(key) as entry:
            if entry is None:
                return None
            files, problem = self._sealed(entry, key)
            if files is not None:
                missing = [n for n in names if n not in files]
                if missing:
                    return None  # made for other kernels: not damaged, just not this one
                for name in names:
                    try:
                        data = (entry / name).read_bytes()
                    except OSError as exc:
                        problem = f"{name} is unreadable: {exc.strerror or exc}"
                        break
                    if hashlib.sha256(data).hexdigest() != files[name]:
                        problem = f"{name} does not match its sealed SHA256"
                        break
                    images[name] = data
        if problem:
            log.warning("initramfs cache entry %s is damaged (%s); discarding it and building "
                        "the initramfs", self.storage.path(key), problem)
            self.storage.remove(key)
            return None
        self.storage.touch([key])
        return images

    def store(self, key: str, images: Mapping[str, bytes], *, label: str = "") -> None:
        """Write entry ``key`` holding ``images`` (by file name) and their sealed digests
        atomically, then apply the limits (the new entry is kept). No-op when the cache is
        disabled."""
        if not self.enabled:
            return
        files = {name: hashlib.sha256(data).hexdigest() for name, data in images.items()}
        seal = {"files": files, "seal": self.seal_key.seal(KIND, key, {"files": files})}

        def fill(directory: Path) -> None:
            directory.mkdir()
            for name, data in images.items():
                (directory / name).write_bytes(data)
            (directory / SEAL).write_text(json.dumps(seal, sort_keys=True))

        self.storage.write(key, fill, meta={"label": f"{key[:12]} {label}".rstrip()})
        self.storage.prune(keep={key})

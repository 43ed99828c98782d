"""The typed global configuration (seed: "Global Configuration Options").

Precedence, lowest first: embedded defaults < config file < environment < spec ``build:`` <
command line. :mod:`imagecomposer.config.loader` assembles a :class:`Config` and remembers
where each value came from for ``imagecomposer config show``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from imagecomposer.foundation.http import Credentials
from imagecomposer.foundation.settings import LogLevel, PackageFamily

__all__ = ["Config", "Core", "Credentials", "ProviderConfig", "default_cache_dir",
           "default_seal_key", "default_work_dir"]

SEAL_KEY_ENV = "IMAGECOMPOSER_SEAL_KEY"


def _xdg(name: str, fallback: str, environ: Mapping[str, str]) -> Path:
    """``$name`` when it is an absolute path (the XDG rule), else ``~/fallback``."""
    value = environ.get(name, "")
    if value and Path(value).is_absolute():
        return Path(value)
    return Path(environ.get("HOME") or Path.home()) / fallback


def default_cache_dir(environ: Mapping[str, str] = os.environ, euid: int | None = None
                      ) -> Path:
    """``/var/cache/imagecomposer`` as root, else ``$XDG_CACHE_HOME/imagecomposer``
    (``~/.cache/imagecomposer``)."""
    if (os.geteuid() if euid is None else euid) == 0:
        return Path("/var/cache/imagecomposer")
    return _xdg("XDG_CACHE_HOME", ".cache", environ) / "imagecomposer"


def default_work_dir(environ: Mapping[str, str] = os.environ, euid: int | None = None
                     ) -> Path:
    """``/var/tmp/imagecomposer`` as root, else ``$XDG_STATE_HOME/imagecomposer/work``
    (``~/.local/state/imagecomposer/work``): workspaces are kept between builds (a stage
    whose inputs did not change is skipped) and hold whole images, so neither a tmpfs
    (``$XDG_RUNTIME_DIR``) nor a directory cleared at boot fits."""
    if (os.geteuid() if euid is None else euid) == 0:
        return Path("/var/tmp/imagecomposer")
    return _xdg("XDG_STATE_HOME", ".local/state", environ) / "imagecomposer" / "work"


def default_seal_key(environ: Mapping[str, str] = os.environ, euid: int | None = None
                     ) -> Path:
    """The key that seals cache entries (:mod:`imagecomposer.foundation.seal`): outside the
    cache directory, so that whoever can write the cache cannot forge an entry.
    ``$IMAGECOMPOSER_SEAL_KEY`` when set (an absolute path), else
    ``/var/lib/imagecomposer/cache.key`` as root, ``$XDG_STATE_HOME/imagecomposer/cache.key``
    (``~/.local/state/imagecomposer/cache.key``) otherwise."""
    named = environ.get(SEAL_KEY_ENV, "")
    if named and Path(named).is_absolute():
        return Path(named)
    if (os.geteuid() if euid is None else euid) == 0:
        return Path("/var/lib/imagecomposer/cache.key")
    return _xdg("XDG_STATE_HOME", ".local/state", environ) / "imagecomposer" / "cache.key"


@attrs.frozen
class Core:
    cache_dir: Path = attrs.field(factory=default_cache_dir)
    work_dir: Path = attrs.field(factory=default_work_dir)
    max_concurrent_builds: int = 4
    cleanup_on_failure: bool = True
    parallel: int = 8  # downloads and other work inside one stage
    timeout: float | None = None  # seconds; None: no limit
    # Host paths every spec may read files from besides its own directory tree
    # (imagecomposer.spec.roots).
    allowed_paths: tuple[Path, ...] = ()


# The limits of each cache (docs/cache.md): max_size_gb caps its disk usage (least recently
# used entries go first), retention_days drops entries unused this long, max_count caps the
# number of entries (per image name for the image cache).


@attrs.frozen
class PackageCacheConfig:
    enabled: bool = True
    max_size_gb: float = 10.0
    retention_days: int = 30


@attrs.frozen
class ImageCacheConfig:
    enabled: bool = True
    max_count: int = 5  # images kept per image name
    max_size_gb: float = 20.0
    retention_days: int = 30


@attrs.frozen
class TreeCacheConfig:
    enabled: bool = True
    max_count: int = 4  # installed trees (~340 MB each for a minimal Debian)
    max_size_gb: float = 4.0
    retention_days: int = 14


@attrs.frozen
class InitramfsCacheConfig:
    enabled: bool = True
    max_count: int = 8
    max_size_gb: float = 1.0
    retention_days: int = 30


@attrs.frozen
class MetadataCacheConfig:
    enabled: bool = True  # false: each resolution starts from an empty, throwaway store
    max_size_gb: float = 2.0
    retention_days: int = 30


@attrs.frozen
class Storage:
    package_cache: PackageCacheConfig = attrs.field(factory=PackageCacheConfig)
    image_cache: ImageCacheConfig = attrs.field(factory=ImageCacheConfig)
    tree_cache: TreeCacheConfig = attrs.field(factory=TreeCacheConfig)
    initramfs_cache: InitramfsCacheConfig = attrs.field(factory=InitramfsCacheConfig)
    metadata_cache: MetadataCacheConfig = attrs.field(factory=MetadataCacheConfig)
    # The key sealing derived cache entries; machines sharing a cache share it (a secret).
    seal_key: Path = attrs.field(factory=default_seal_key)
    # A directory shared by build hosts (docs/distributed.md): packages by SHA256 are taken
    # from it before any download and published to it after one. None: no shared store.
    shared_store: Path | None = None
    # An HTTP object store (GET/PUT/DELETE) for the shared packages and images instead of
    # the directory (which still holds a cluster's outputs). None: the directory's.
    shared_store_url: str | None = None


@attrs.frozen
class Logging:
    level: LogLevel = "info"
    file: Path | None = None


@attrs.frozen
class ProviderConfig:
    """How to reach one OS family's archive.

    ``mirror: auto`` takes the mirror from the host's apt sources when they serve that
    distribution. ``keyring`` is the OpenPGP keyring its metadata must be signed with.
    """

    kind: PackageFamily = "deb"
    mirror: str | None = "auto"
    security_mirror: str | None = "auto"
    keyring: Path | None = None
    check_valid_until: bool = True


def default_providers() -> dict[str, ProviderConfig]:
    return {
        "debian": ProviderConfig(
            kind="deb",
            keyring=Path("/usr/share/keyrings/debian-archive-keyring.gpg"),
        ),
    }


@attrs.frozen
class Config:
    core: Core = attrs.field(factory=Core)  # a factory: the defaults depend on the user
    storage: Storage = attrs.field(factory=Storage)
    logging: Logging = attrs.field(factory=Logging)
    providers: dict[str, ProviderConfig] = attrs.field(factory=default_providers)
    credentials: tuple[Credentials, ...] = ()

    @property
    def package_cache_dir(self) -> Path:
        return self.core.cache_dir / "packages"

    @property
    def image_cache_dir(self) -> Path:
        return self.core.cache_dir / "images"

    @property
    def metadata_cache_dir(self) -> Path:
        return self.core.cache_dir / "metadata"

    @property
    def tree_cache_dir(self) -> Path:
        return self.core.cache_dir / "trees"

    @property
    def initramfs_cache_dir(self) -> Path:
        return self.core.cache_dir / "initramfs"


def without_caches(config: Config) -> Config:
    """``config`` with every cache of ``storage`` disabled (``--no-cache``): packages and
    repository metadata go into throwaway stores, and no tree, initramfs or image is read
    from or written to a cache."""
    s = config.storage
    return attrs.evolve(config, storage=Storage(
        package_cache=attrs.evolve(s.package_cache, enabled=False),
        image_cache=attrs.evolve(s.image_cache, enabled=False),
        tree_cache=attrs.evolve(s.tree_cache, enabled=False),
        initramfs_cache=attrs.evolve(s.initramfs_cache, enabled=False),
        metadata_cache=attrs.evolve(s.metadata_cache, enabled=False)))

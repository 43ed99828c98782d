"""The typed global configuration (seed: "Global Configuration Options").

Precedence, lowest first: embedded defaults < config file < environment < spec ``build:`` <
command line. :mod:`imagecomposer.config.loader` assembles a :class:`Config` and remembers
where each value came from for ``imagecomposer config show``.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from imagecomposer.foundation.http import Credentials
from imagecomposer.foundation.settings import LogLevel, PackageFamily

__all__ = ["Config", "Core", "Credentials", "ProviderConfig"]


@attrs.frozen
class Core:
    cache_dir: Path = Path("/var/cache/imagecomposer")
    work_dir: Path = Path("/var/tmp/imagecomposer")
    max_concurrent_builds: int = 4
    cleanup_on_failure: bool = True
    parallel: int = 8  # downloads and other work inside one stage
    timeout: float | None = None  # seconds; None: no limit
    # Host paths every spec may read files from besides its own directory tree
    # (imagecomposer.spec.roots).
    allowed_paths: tuple[Path, ...] = ()


@attrs.frozen
class PackageCacheConfig:
    enabled: bool = True
    max_size_gb: float = 10.0
    retention_days: int = 30


@attrs.frozen
class ImageCacheConfig:
    enabled: bool = True
    max_count: int = 5  # images kept per spec


@attrs.frozen
class Storage:
    package_cache: PackageCacheConfig = PackageCacheConfig()
    image_cache: ImageCacheConfig = ImageCacheConfig()


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
    core: Core = Core()
    storage: Storage = Storage()
    logging: Logging = Logging()
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

"""What one image build carries through its stages: spec, config, options, workspace.

Stages hand data to each other through files in the workspace (the lock, the raw disk, the
SBOM package list), never only in memory, so a later stage works the same whether an
earlier one ran in this process or was skipped as up to date.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.cache import PackageCache, Progress
from imagecomposer.compose.composer import Composer
from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import LockError
from imagecomposer.lock import Lock
from imagecomposer.pipeline.events import EventSink
from imagecomposer.pipeline.workspace import Workspace
from imagecomposer.spec.model import Spec

log = logging.getLogger("imagecomposer.pipeline")


@attrs.frozen
class BuildOptions:
    """The command line's per-build overrides (seed: "Command-Line Overrides")."""

    until: str | None = None  # --stage
    skip: tuple[str, ...] = ()  # --skip-stage
    no_cache: bool = False  # --no-cache: rerun every stage, no package or image cache
    no_package_cache: bool = False
    no_image_cache: bool = False
    timeout: float | None = None  # seconds
    parallel: int | None = None
    keep_temp: bool = False
    locked: Path | None = None  # --locked: install exactly this lock
    output_dir: Path | None = None
    wait: bool = False  # --wait: queue behind a running build of the same spec, not fail


@attrs.define
class BuildContext:
    spec: Spec
    config: Config
    options: BuildOptions
    workspace: Workspace
    events: EventSink
    stage_seconds: dict[str, float] = attrs.Factory(dict)
    _package_cache: PackageCache | None = None
    _packages: dict[str, dict[str, Path]] = attrs.Factory(dict)
    _progress: Progress | None = None

    @property
    def name(self) -> str:
        return self.spec.image.name

    @property
    def output_dir(self) -> Path:
        if self.options.output_dir is not None:
            return self.options.output_dir
        if self.spec.output.directory is not None:
            return self.spec.output.directory
        return self.spec.directory / "output" / self.name

    @property
    def parallel(self) -> int:
        return self.options.parallel or self.config.core.parallel

    @property
    def use_package_cache(self) -> bool:
        return (self.config.storage.package_cache.enabled
                and self.spec.build.cache.use_package_cache
                and not (self.options.no_cache or self.options.no_package_cache))

    @property
    def use_image_cache(self) -> bool:
        return (self.config.storage.image_cache.enabled
                and self.spec.build.cache.use_image_cache
                and not (self.options.no_cache or self.options.no_image_cache))

    # --- files stages hand to each other --------------------------------------------------

    @property
    def lock_path(self) -> Path:
        return self.workspace.root / "packages" / "lock.json"

    @property
    def installed_tree(self) -> Path:
        return self.workspace.root / "compose" / "root"

    @property
    def raw_path(self) -> Path:
        return self.workspace.root / "configuration" / f"{self.name}.raw"

    @property
    def layout_path(self) -> Path:
        return self.workspace.root / "configuration" / "layout.json"

    @property
    def sbom_packages_path(self) -> Path:
        return self.workspace.root / "configuration" / "sbom-packages.json"

    # --- objects the stages share ----------------------------------------------------------

    def package_events(self, event: Any) -> None:
        """Packages-stage events: progress bar or log lines, then the build's own sink."""
        if self._progress is None:
            self._progress = Progress()
        self._progress(event)

    def adopt_packages(self, lock: Lock, packages: dict[str, Path], cache: PackageCache
                       ) -> None:
        """Keep what the packages stage fetched for the stages after it."""
        self.close()
        self._package_cache = cache
        self._packages[lock.hash] = packages

    def fetch_packages(self, lock: Lock) -> dict[str, Path]:
        """The lock's packages, for a stage that runs after a skipped packages stage: from
        the cache, downloading only what is missing (a throwaway store starts empty)."""
        if lock.hash not in self._packages:
            if self._package_cache is None:
                self._package_cache = PackageCache(self.config, enabled=self.use_package_cache)
            self._packages[lock.hash] = self._package_cache.fetch(
                lock, parallel=self.parallel, events=self.package_events)
        return self._packages[lock.hash]

    def composer(self) -> Composer:
        return Composer(self.config, keep_temp=self.options.keep_temp,
                        use_cache=not self.options.no_cache,
                        events=lambda line: log.info("[%s] %s", self.name, line))

    def close(self) -> None:
        """Release what the build held (a throwaway package store is removed)."""
        if self._package_cache is not None:
            self._package_cache.close()
            self._package_cache = None

    def lock(self) -> Lock:
        if not self.lock_path.exists():
            raise LockError(f"no lock in the workspace ({self.lock_path}): run the packages "
                            "stage first")
        return Lock.read(self.lock_path)


def digest(*parts: Any) -> str:
    """A stable SHA256 of JSON-serializable parts (stage input hashes)."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()

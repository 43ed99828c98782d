"""What one image build carries through its stages: spec, config, options, workspace.

The spec and the configuration are read here only to build the stages' typed inputs
(:mod:`imagecomposer.pipeline.inputs`); a stage's ``run()`` gets its inputs and uses the
context for operational things only: workspace paths, the output directory, parallelism,
cache switches, the package store, the event sink.

Stages hand data to each other through files in the workspace (the lock, the raw disk, the
SBOM package list), never only in memory, so a later stage works the same whether an
earlier one ran in this process or was skipped as up to date.
"""

from __future__ import annotations

import threading
from pathlib import Path

import attrs

from imagecomposer.cache import PackageCache
from imagecomposer.compose.composer import Composer
from imagecomposer.config.model import Config
from imagecomposer.foundation.epoch import choose_epoch
from imagecomposer.foundation.errors import LockError, UsageError
from imagecomposer.foundation.events import (
    Event,
    EventSink,
    FetchStarted,
    PackageFetched,
    Progress,
    StageFailed,
    StageFinished,
    StageStarted,
)
from imagecomposer.lock import Lock
from imagecomposer.pipeline.workspace import Workspace
from imagecomposer.spec.model import Spec


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
    # --locked: install exactly this lock; True: OUTPUT/NAME.lock.json of an earlier build
    locked: Path | bool | None = None
    output_dir: Path | None = None
    wait: bool = False  # --wait: queue behind a running build of the same spec, not fail
    # --check-reproducible: then build again in a fresh workspace, every cache off, and
    # compare the outputs byte for byte (imagecomposer.pipeline.reproduce)
    check_reproducible: bool = False
    # the cluster worker running this build (its name): named by the signed provenance's
    # runDetails.builder.id; None: a local build. Not an input of any stage (no cache key).
    worker: str | None = None


def output_dir(spec: Spec, options: BuildOptions) -> Path:
    """Where a build of ``spec`` publishes: ``-o``, else ``output.directory``, else
    ``output/NAME`` next to the spec."""
    if options.output_dir is not None:
        return options.output_dir
    if spec.output.directory is not None:
        return spec.output.directory
    return spec.directory / "output" / spec.image.name


class BuildEvents:
    """The build's one event sink: fills in ``build`` and the running ``stage`` of every
    event, adds package ``Progress``, and forwards to ``sink``."""

    def __init__(self, build: str, sink: EventSink) -> None:
        self.build = build
        self.sink = sink
        self.stage = ""
        self._packages = (0, 0)  # (fetched, in the lock)
        self._lock = threading.RLock()
        self._dispatching = threading.local()

    @property
    def dispatching(self) -> bool:
        """Whether this thread is handing an event to the consumers (whose log lines are
        then renderings of that event, not news of their own)."""
        return bool(getattr(self._dispatching, "active", False))

    def __call__(self, event: Event) -> None:
        with self._lock:
            outer = self.dispatching
            self._dispatching.active = True
            try:
                self._dispatch(event)
            finally:
                self._dispatching.active = outer

    def _dispatch(self, event: Event) -> None:
        if not event.build or not event.stage:
            event = attrs.evolve(event, build=event.build or self.build,
                                 stage=event.stage or self.stage)
        match event:
            case StageStarted():
                self.stage = event.stage
            case StageFinished() | StageFailed():
                self.stage = ""
        self.sink(event)
        self._progress(event)

    def _progress(self, event: Event) -> None:
        if isinstance(event, FetchStarted):
            self._packages = (0, event.packages)
        elif isinstance(event, PackageFetched):
            done, total = self._packages[0] + 1, self._packages[1]
            self._packages = (done, total)
            self.sink(Progress("packages fetched", done, total or None, "packages",
                               build=event.build, stage=event.stage))


@attrs.define
class BuildContext:
    spec: Spec
    config: Config
    options: BuildOptions
    workspace: Workspace
    events: BuildEvents
    _package_cache: PackageCache | None = None
    _packages: dict[str, dict[str, Path]] = attrs.Factory(dict)
    _lock: tuple[tuple[int, int, int], Lock] | None = None

    @property
    def name(self) -> str:
        return self.spec.image.name

    @property
    def output_dir(self) -> Path:
        return output_dir(self.spec, self.options)

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

    @property
    def keep_on_failure(self) -> bool:
        """Whether a failed build keeps its workspace's work trees (``--keep-temp`` or
        ``core.cleanup_on_failure: false``)."""
        return self.options.keep_temp or not self.config.core.cleanup_on_failure

    def locked_path(self) -> Path | None:
        """The lock ``--locked`` installs (UsageError when an earlier build left none)."""
        locked = self.options.locked
        if locked is None or locked is False:
            return None
        path = self.output_dir / f"{self.name}.lock.json" if locked is True else Path(locked)
        if not path.is_file():
            raise UsageError(f"--locked: no lock at {path} (build once without --locked "
                             "first)")
        return path

    def emit(self, event: Event) -> None:
        self.events(event)

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

    def stage_result(self, stage: str) -> Path | None:
        """Where ``stage`` leaves its result (what ``--stage STAGE`` stops with): the lock,
        the installed tree, the raw disk (and its signature), the output directory; None
        for validate, which writes nothing, or when it is not there."""
        found = {"packages": self.lock_path, "compose": self.installed_tree,
                 "configuration": self.raw_path,
                 "sign": self.raw_path.with_name(self.raw_path.name + ".sig")
                 if self.spec.output.sign is not None else self.raw_path,
                 "finalize": self.output_dir}.get(stage)
        return found if found is not None and found.exists() else None

    # --- objects the stages share ----------------------------------------------------------

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
                lock, parallel=self.parallel, events=self.emit)
        return self._packages[lock.hash]

    def composer(self, config: Config | None = None, *, epoch: int | None = None) -> Composer:
        """A composer for ``config`` (a stage's: its hashed settings over the operational
        ones) with the build's ``--parallel`` and ``epoch`` (a stage's; default
        :meth:`epoch`), reporting to the build's events."""
        config = config or self.config
        config = attrs.evolve(config, core=attrs.evolve(config.core, parallel=self.parallel))
        return Composer(config, keep_temp=self.options.keep_temp,
                        keep_on_failure=self.keep_on_failure,
                        use_cache=not self.options.no_cache, events=self.emit,
                        epoch=self.epoch()[0] if epoch is None else epoch)

    def epoch(self) -> tuple[int, str]:
        """The build epoch and its source: ``SOURCE_DATE_EPOCH``, else the newest date of
        the lock's repositories (:attr:`Lock.source_date`), else the fixed default."""
        return choose_epoch(inputs=self.lock().source_date)

    def close(self) -> None:
        """Release what the build held (a throwaway package store is removed)."""
        if self._package_cache is not None:
            self._package_cache.close()
            self._package_cache = None

    def lock(self) -> Lock:
        """The lock the packages stage left in the workspace (read once per version)."""
        try:
            st = self.lock_path.stat()
        except FileNotFoundError:
            raise LockError(f"no lock in the workspace ({self.lock_path}): run the packages "
                            "stage first") from None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._lock is None or self._lock[0] != stamp:
            self._lock = (stamp, Lock.read(self.lock_path))
        return self._lock[1]

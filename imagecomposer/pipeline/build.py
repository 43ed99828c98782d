"""The default image pipeline: the six stages wired to the library objects, with the image
cache as an engine hook.

``ImagePipeline(config).build(spec)`` is what ``imagecomposer build`` runs. The engine runs
once. After the packages stage a hook computes the image cache key from the typed inputs of
every stage after packages (exactly what those stages hash); a hit restores the outputs and
the remaining stages are skipped (``image cache hit``), a miss says which field changed.
After finalize another hook stores the outputs under that key.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.cache.images import CacheKey, ImageCache
from imagecomposer.cache.registry import Caches
from imagecomposer.config import load_config
from imagecomposer.config.model import Config, without_caches
from imagecomposer.foundation import cleanup, display, userns
from imagecomposer.foundation.console import EVENT_RECORD, Console
from imagecomposer.foundation.errors import (
    BuildInterrupted,
    ImageComposerError,
    LockError,
    describe,
    stage_of,
)
from imagecomposer.foundation.events import BuildEnded, BuildWarning, EventSink, fan_out
from imagecomposer.foundation.fingerprint import fingerprint
from imagecomposer.foundation.fsutil import check_writable
from imagecomposer.inspect.outputs import OutputsReport
from imagecomposer.pipeline import reproduce
from imagecomposer.pipeline.context import BuildContext, BuildEvents, BuildOptions, output_dir
from imagecomposer.pipeline.engine import (
    UPSTREAM,
    Engine,
    Hook,
    RunOptions,
    RunReport,
    RunView,
    Stage,
)
from imagecomposer.pipeline.inputs import ConfigurationInput
from imagecomposer.pipeline.stages import DEFAULT_STAGES
from imagecomposer.pipeline.workspace import Workspace
from imagecomposer.spec.model import STAGES, Spec, encryptions

log = logging.getLogger("imagecomposer.pipeline")

IMAGE_CACHE_HIT = "image cache hit"
SHARED_HIT = "image cache hit (from the shared store)"  # starts as IMAGE_CACHE_HIT


@attrs.frozen
class BuildReport:
    """What a build did: per-stage outcomes and where its outputs are.

    ``stage`` is the last stage the build went to (``--stage``; else finalize) and
    ``result`` where that stage's result is: the output directory after finalize, else the
    stage's output in the workspace (the lock, the installed tree, the raw disk image);
    None when the stage leaves nothing (validate)."""

    run: RunReport
    output_dir: Path
    image_cache_hit: bool = False
    stage: str = "finalize"
    result: Path | None = None
    # --check-reproducible: the comparison with a second build (all outputs identical)
    reproducibility: OutputsReport | None = None

    def table(self) -> str:
        return self.run.table()

    def where(self) -> str:
        """The line the CLI prints last: where the result is."""
        if self.stage == "finalize":
            return f"outputs: {self.output_dir}"
        if self.result is None:
            return f"stopped after {self.stage}: it writes nothing (the spec is valid)"
        return f"stopped after {self.stage}: its result is {self.result}"

    def __repr__(self) -> str:
        """``BuildReport(build='web', ran=4, skipped=2, failed=0, seconds=81.2, ...)``."""
        count = {s: sum(o.status == s for o in self.run.outcomes)
                 for s in ("ran", "skipped", "failed")}
        return display.call("BuildReport", build=self.run.build, **count,
                            seconds=display.Bare(f"{self.run.seconds:.1f}"),
                            output_dir=self.output_dir, image_cache_hit=self.image_cache_hit)

    def _repr_html_(self) -> str:  # Jupyter
        rows = [(o.stage, o.status, f"{o.seconds:.1f}" if o.status != "skipped" else "-",
                 o.reason) for o in self.run.outcomes]
        hit = " (image cache hit)" if self.image_cache_hit else ""
        return display.html_grid(
            ("stage", "status", "s", "reason"), rows, right=(2,),
            title=f"build {self.run.build} → {self.output_dir}{hit}, "
                  f"{self.run.seconds:.1f} s")


class ImagePipeline:
    """Builds images with the default stages for one global configuration.

    ``events`` receives every event of every stage, in order
    (:mod:`imagecomposer.foundation.events`); log lines and the download bar come from a
    :class:`~imagecomposer.foundation.console.Console` attached to the same stream
    (``progress_bar``: draw the bar on a terminal; None: when stderr is one). ``stages``
    replaces the default stages (custom pipelines, stand-ins in tests).
    """

    def __init__(self, config: Config, *, events: EventSink | None = None,
                 progress_bar: bool | None = None,
                 stages: Sequence[Stage[BuildContext, Any]] = DEFAULT_STAGES) -> None:
        self.config = config
        self.sink, self.progress_bar, self.stages = events, progress_bar, stages
        self.events = fan_out(Console(tty=progress_bar), events)
        self.engine: Engine[BuildContext] = Engine(stages, events=self.events)

    def __repr__(self) -> str:
        core = self.config.core
        return display.call("ImagePipeline", work_dir=core.work_dir, cache_dir=core.cache_dir,
                            stages=len(self.engine.stages))

    def build(self, spec: Spec, options: BuildOptions | None = None) -> BuildReport:
        """Run the build; its last event is a :class:`BuildEnded` (also when it fails).

        Not as root, a build that goes past the packages stage first makes this process root
        of a user namespace mapped to the user's subordinate ids
        (:func:`imagecomposer.foundation.userns.become_root`, see docs/rootless.md): what is
        missing for that is one error before any work."""
        options = options or BuildOptions()
        reproduce.check_options(options)
        events = BuildEvents(spec.image.name, self.events)
        started = time.monotonic()
        try:
            try:
                report = self._build(spec, options, events)
                if options.check_reproducible:
                    report = self._check_reproducible(spec, options, report)
            finally:
                cleanup.wait_for_removals()  # work trees deleted in the background
        except BaseException as exc:
            where = stage_of(exc)
            code = (exc.exit_code if isinstance(exc, ImageComposerError) else
                    BuildInterrupted.exit_code if isinstance(exc, KeyboardInterrupt) else 1)
            with contextlib.suppress(Exception):
                events(BuildEnded(False, time.monotonic() - started, error=describe(exc),
                                  exit_code=code, stage=where[0] if where else ""))
            raise
        events(BuildEnded(True, report.run.seconds, output=report.result, stage=""))
        return report

    def _build(self, spec: Spec, options: BuildOptions, events: BuildEvents) -> BuildReport:
        if goes_past_packages(options):
            userns.become_root()
        # Before the first stage: a directory the build cannot write fails here, not later.
        check_writable(self.config.core.work_dir, "the work directory (core.work_dir)")
        if options.until != "validate":
            out = output_dir(spec, options)
            check_writable(out, "the output directory")
            check_writable(out.parent, "the directory holding the output directory")
        workspace = Workspace.for_spec(self.config.core.work_dir, spec.image.name, spec.path)
        # --no-cache bypasses every cache: the metadata, tree and initramfs caches too
        config = without_caches(self.config) if options.no_cache else self.config
        ctx = BuildContext(spec, config, options, workspace, events)
        ctx.locked_path()  # a missing --locked lock fails here, before anything is written
        run_options = RunOptions(selected=tuple(spec.build.stages), until=options.until,
                                 skip=tuple(options.skip), force=options.no_cache,
                                 timeout=options.timeout or self.config.core.timeout)
        with warnings_as_events(events), workspace.locked(wait=options.wait):
            if "validate" in options.skip:
                log.warning("skipping the validate stage is not recommended")
            # Holding the lock, nothing else writes here: what is left is a killed build's.
            workspace.remove_leftovers(ctx.output_dir)
            Caches(self.config).remove_leftovers()  # of killed writers, in every cache
            try:
                run = self.engine.run(ctx, workspace, run_options, build=ctx.name,
                                      hooks=self._hooks(ctx, run_options), events=events)
            except BaseException:
                if ctx.keep_on_failure:
                    why = "--keep-temp" if options.keep_temp else \
                        "core.cleanup_on_failure is false"
                    log.warning("[%s] the failed build's work trees are kept in %s (%s)",
                                ctx.name, workspace.root, why)
                else:
                    workspace.remove_temp()
                raise
            finally:
                ctx.close()
            if options.keep_temp:
                log.info("[%s] work trees kept in %s (--keep-temp)", ctx.name, workspace.root)
            else:
                workspace.remove_temp()
        hit = any(o.reason in (IMAGE_CACHE_HIT, SHARED_HIT) for o in run.outcomes)
        last = options.until or STAGES[-1]
        result = ctx.output_dir if hit else ctx.stage_result(last)
        log.debug("build %s: %s result at %s", ctx.name, last, result)
        return BuildReport(run, ctx.output_dir, image_cache_hit=hit, stage=last, result=result)

    def _check_reproducible(self, spec: Spec, options: BuildOptions, first: BuildReport
                            ) -> BuildReport:
        return attrs.evolve(first, reproducibility=self.check_reproducible(
            spec, first.output_dir, options))

    def check_reproducible(self, spec: Spec, output_dir: Path,
                           options: BuildOptions | None = None) -> OutputsReport:
        """Build ``spec`` again from the lock in ``output_dir`` (an earlier build's outputs),
        in a fresh workspace, cache and output directory with every cache off, and compare
        every output byte for byte (:mod:`imagecomposer.pipeline.reproduce`). Returns the
        comparison when all are identical; raises :class:`NotReproducible` (its ``report``
        says where they differ) when not. ``options``: the first build's (``parallel``,
        ``timeout``, ``keep_temp`` keeps the second build's directories)."""
        options = options or BuildOptions()
        rebuild = reproduce.plan_rebuild(self.config, spec, options, output_dir)
        log.info("[%s] checking reproducibility: building again in %s with every cache off",
                 spec.image.name, rebuild.base)
        failed = True
        try:
            started = time.monotonic()
            sink = self.sink
            # the second build's events are tagged as such: NAME (check-reproducible)
            renamed = None if sink is None else (
                lambda event: sink(attrs.evolve(event, build=f"{event.build} "
                                                             f"({reproduce.TAG})")))
            ImagePipeline(rebuild.config, events=renamed, progress_bar=self.progress_bar,
                          stages=self.stages).build(spec, rebuild.options)
            found = reproduce.compare_builds(spec.image.name, output_dir, rebuild,
                                             time.monotonic() - started)
            failed = False
        finally:
            reproduce.finish(rebuild, keep=options.keep_temp, failed=failed)
        log.info("[%s] %s", spec.image.name, found.summary())
        return found

    def _hooks(self, ctx: BuildContext, options: RunOptions) -> list[Hook[BuildContext]]:
        """The image cache around the stages after packages, when the build goes to the
        end and may use it (a build stopped early with --stage leaves that stage's own result
        in the workspace: a cached image would skip it)."""
        if options.until not in (None, STAGES[-1]) or not ctx.use_image_cache:
            return []
        hook = ImageCacheHook(ImageCache.for_config(self.config))
        return [Hook("packages", hook.lookup), Hook("configuration", hook.make_room),
                Hook("finalize", hook.store)]


def goes_past_packages(options: BuildOptions) -> bool:
    """Whether a build with ``options`` may run a stage after packages (those act on an
    image tree, as root or root of a user namespace)."""
    names: list[str] = list(STAGES)
    return options.until is None or names.index(options.until) > names.index("packages")


class ImageCacheHook:
    """Looks the build up in the image cache after packages; after a miss, makes room for
    its entry before finalize; stores it after finalize."""

    def __init__(self, cache: ImageCache) -> None:
        self.cache = cache
        self.key: CacheKey | None = None
        self.missed = False

    def lookup(self, ctx: BuildContext, view: RunView[BuildContext]) -> str | None:
        self.key = image_key(ctx.name, view, "packages")
        if self.key is None:
            return None
        log.debug("image cache key of %s: %s", ctx.name, self.key.digest)
        entry = self.cache.lookup(self.key)
        if entry is None:
            log.info("%s", self.cache.explain_miss(self.key))
            self.missed = True
            return None
        if self.cache.restore(entry, ctx.output_dir) is None:  # changed since the lookup
            log.info("[%s] %s", ctx.name, self.cache.explain_miss(self.key))
            self.missed = True
            return None
        return SHARED_HIT if entry.shared else IMAGE_CACHE_HIT

    def make_room(self, ctx: BuildContext, view: RunView[BuildContext]) -> str | None:
        """Before finalize, after a miss: evict what the store will evict, the files
        deleted in the background while finalize hashes and converts (CPU) instead of
        after it (ImageCache.make_room)."""
        if self.missed and self.key is not None:
            self.cache.make_room(self.key)
        return None

    def store(self, ctx: BuildContext, view: RunView[BuildContext]) -> str | None:
        finalize = view.outcome("finalize")
        made = finalize is not None and (finalize.status == "ran"
                                         or finalize.reason == "up to date")
        if self.key is not None and made and (ctx.output_dir / "SHA256SUMS").exists():
            self.cache.store(self.key, ctx.output_dir)
        return None


def image_key(name: str, view: RunView[BuildContext], after: str) -> CacheKey | None:
    """The key of the outputs of the stages after ``after``: a fingerprint of their typed
    inputs, with one fingerprint per input field (``configuration.customizations.users``)
    so that a miss can name what changed. None without a lock yet, or for a LUKS2 image
    (never reused: its keys are random at every build)."""
    try:
        found = {stage: view.inputs(stage) for stage in view.stages_after(after)}
    except LockError:
        return None
    for item in found.values():
        if isinstance(item.value, ConfigurationInput) and encryptions(item.value.disk):
            return None
    fields: dict[str, str] = {}
    for stage, item in found.items():
        fields.update((f"{stage}.{field}", digest) for field, digest in item.key.fields.items()
                      if not field.startswith(f"{UPSTREAM}."))
    pairs = tuple(sorted(fields.items()))
    return CacheKey(name, fingerprint({s: i.key.digest for s, i in found.items()}), pairs)


class _WarningEvents(logging.Handler):
    def __init__(self, events: BuildEvents) -> None:
        super().__init__(logging.WARNING)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING and not self.events.dispatching \
                and not getattr(record, EVENT_RECORD, False):
            with contextlib.suppress(Exception):
                self.events(BuildWarning(record.getMessage(), record.name))
            # the warning is an event now: a consumer writing events (JSON) skips the line
            setattr(record, EVENT_RECORD, True)


@contextlib.contextmanager
def warnings_as_events(events: BuildEvents) -> Iterator[None]:
    """Every warning an ``imagecomposer`` logger emits meanwhile also becomes a
    :class:`BuildWarning` event (not the log lines that render events; builds in other
    threads of this process included: run concurrent builds with
    :func:`~imagecomposer.pipeline.many.build_many`). The handler goes first, so that the
    handlers after it see the record marked as an event (:data:`EVENT_RECORD`)."""
    handler = _WarningEvents(events)
    logger = logging.getLogger("imagecomposer")
    logger.handlers.insert(0, handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def build(spec: Spec | Path | str, *, config: Config | None = None,
          options: BuildOptions | None = None, events: EventSink | None = None,
          variables: Mapping[str, str] | None = None) -> BuildReport:
    """Build one image with the default pipeline (the library form of ``imagecomposer
    build``); a path is loaded with ``variables``."""
    if config is None:
        config = load_config().config
    if not isinstance(spec, Spec):
        spec = Spec.load(spec, variables=variables, allowed_paths=config.core.allowed_paths)
    return ImagePipeline(config, events=events).build(spec, options)


def check_reproducible(spec: Spec | Path | str, output_dir: Path, *,
                       config: Config | None = None, options: BuildOptions | None = None,
                       events: EventSink | None = None,
                       variables: Mapping[str, str] | None = None) -> OutputsReport:
    """Check that the outputs of an earlier build of ``spec`` in ``output_dir`` are what a
    second build from their lock writes, byte for byte
    (:meth:`ImagePipeline.check_reproducible`; ``build(..., options=BuildOptions(
    check_reproducible=True))`` builds first, then checks)."""
    if config is None:
        config = load_config().config
    if not isinstance(spec, Spec):
        spec = Spec.load(spec, variables=variables, allowed_paths=config.core.allowed_paths)
    return ImagePipeline(config, events=events).check_reproducible(spec, output_dir, options)

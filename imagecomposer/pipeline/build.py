"""The default image pipeline: the six stages wired to the library objects, plus the image
cache around them.

``ImagePipeline(config).build(spec)`` is what ``imagecomposer build`` runs. After the
packages stage the image cache key (spec, referenced files, lock, tool version) is known;
a hit restores the outputs and ends the build, a miss says which input changed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs

from imagecomposer import __version__
from imagecomposer.cache.images import CacheKey, ImageCache, image_key
from imagecomposer.cache.registry import Caches
from imagecomposer.config import load_config
from imagecomposer.config.model import Config
from imagecomposer.foundation import display
from imagecomposer.pipeline.context import BuildContext, BuildOptions
from imagecomposer.pipeline.engine import Engine, RunOptions, RunReport, StageOutcome
from imagecomposer.pipeline.events import EventSink, StageSkipped, fan_out, log_event
from imagecomposer.pipeline.stages import DEFAULT_STAGES
from imagecomposer.pipeline.workspace import Workspace
from imagecomposer.spec.model import STAGES, Spec, encryptions

log = logging.getLogger("imagecomposer.pipeline")


@attrs.frozen
class BuildReport:
    """What a build did: per-stage outcomes and where its outputs are."""

    run: RunReport
    output_dir: Path
    image_cache_hit: bool = False

    def table(self) -> str:
        return self.run.table()

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
    """Builds images with the default stages for one global configuration."""

    def __init__(self, config: Config, *, events: EventSink | None = None) -> None:
        self.config = config
        self.events = fan_out(log_event, events)
        self.engine = Engine(DEFAULT_STAGES, events=self.events)

    def __repr__(self) -> str:
        core = self.config.core
        return display.call("ImagePipeline", work_dir=core.work_dir, cache_dir=core.cache_dir,
                            stages=len(self.engine.stages))

    def build(self, spec: Spec, options: BuildOptions | None = None) -> BuildReport:
        options = options or BuildOptions()
        if "validate" in options.skip:
            log.warning("skipping the validate stage is not recommended")
        workspace = Workspace.for_spec(self.config.core.work_dir, spec.image.name, spec.path)
        ctx = BuildContext(spec, self.config, options, workspace, self.events)
        base = RunOptions(selected=tuple(spec.build.stages), until=options.until,
                          skip=tuple(options.skip), force=options.no_cache,
                          timeout=options.timeout or self.config.core.timeout)
        with workspace.locked(wait=options.wait):
            # Holding the lock, nothing else writes here: what is left is a killed build's.
            workspace.remove_leftovers(ctx.output_dir)
            Caches(self.config).remove_leftovers()  # of killed writers, in every cache
            try:
                report = self._build(ctx, base)
            except BaseException:
                if self.config.core.cleanup_on_failure and not options.keep_temp:
                    workspace.remove_temp()
                raise
            finally:
                ctx.close()
            if not options.keep_temp:
                workspace.remove_temp()
        return report

    def _build(self, ctx: BuildContext, base: RunOptions) -> BuildReport:
        names: list[str] = list(STAGES)
        until_index = names.index(base.until) if base.until else len(names) - 1
        if until_index <= names.index("packages") or not ctx.use_image_cache:
            return BuildReport(self._run(ctx, base), ctx.output_dir)
        first = self._run(ctx, attrs.evolve(base, until="packages"))
        first = attrs.evolve(first, outcomes=tuple(
            o for o in first.outcomes if o.reason != "after --stage packages"))
        key = self._image_key(ctx)
        if key is not None:
            cache = self._image_cache()
            entry = cache.lookup(key)
            if entry is not None:
                cache.restore(entry, ctx.output_dir)
                log.info("[%s] image cache hit: restored %s", ctx.name, ctx.output_dir)
                rest = [StageOutcome(n, "skipped", "image cache hit")
                        for n in names[names.index("packages") + 1:until_index + 1]]
                for outcome in rest:
                    self.events(StageSkipped(ctx.name, outcome.stage, outcome.reason))
                run = RunReport(ctx.name, first.outcomes + tuple(rest), first.seconds)
                return BuildReport(run, ctx.output_dir, image_cache_hit=True)
            log.info("[%s] %s", ctx.name, cache.explain_miss(key))
        done = ("validate", "packages")
        second = self._run(ctx, attrs.evolve(base, skip=tuple({*base.skip, *done})))
        outcomes = first.outcomes + tuple(o for o in second.outcomes if o.stage not in done)
        run = RunReport(ctx.name, outcomes, first.seconds + second.seconds)
        if key is not None and base.until in (None, "finalize") and \
                (ctx.output_dir / "SHA256SUMS").exists():
            self._image_cache().store(key, ctx.output_dir)
        return BuildReport(run, ctx.output_dir)

    def _run(self, ctx: BuildContext, options: RunOptions) -> RunReport:
        report = self.engine.run(ctx, ctx.workspace, options, build=ctx.name)
        ctx.stage_seconds.update({o.stage: o.seconds for o in report.outcomes
                                  if o.status == "ran"})
        return report

    def _image_key(self, ctx: BuildContext) -> CacheKey | None:
        if not ctx.lock_path.exists():
            return None
        if encryptions(ctx.spec.disk):
            # LUKS2 images are never reused: their keys are random at every build, and a
            # cache key would have to hash the key material
            return None
        return image_key(ctx.spec.canonical_json(), ctx.spec.referenced_files(),
                         ctx.lock().hash, __version__, name=ctx.name, base=ctx.spec.directory)

    def _image_cache(self) -> ImageCache:
        return ImageCache.for_config(self.config)


def build(spec: Spec | Path | str, *, config: Config | None = None,
          options: BuildOptions | None = None, events: EventSink | None = None
          ) -> BuildReport:
    """Build one image with the default pipeline (the library form of ``imagecomposer build``)."""
    if config is None:

        config = load_config().config
    if not isinstance(spec, Spec):
        spec = Spec.load(spec, allowed_paths=config.core.allowed_paths)
    return ImagePipeline(config, events=events).build(spec, options)

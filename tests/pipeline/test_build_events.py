"""Every event of every stage reaches ``ImagePipeline(config, events=...)``, in order, and the
build result holds how long every stage took, the manifest does not (issues 11, 10).

Hermetic and without root: the real validate and packages stages against a signed test
archive on 127.0.0.1, the real compose stage restoring its tree from the installed-tree
cache, a stand-in configuration stage (configuring a tree needs root) that writes a small
raw disk, then the real sign and finalize stages (qemu-img, SHA256SUMS, manifest). A second
identical build is an image cache hit announced once, with no stage line for a flag nobody
gave.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagecomposer.cache.trees import TreeCache
from imagecomposer.compose.composer import Composer
from imagecomposer.config.model import Config
from imagecomposer.foundation.epoch import choose_epoch
from imagecomposer.foundation.events import (
    BuildWarning,
    ConfigurationStep,
    Event,
    ExportStep,
    FetchFinished,
    FetchStarted,
    InstallStep,
    MetadataLoaded,
    PackageFetched,
    Progress,
    Resolved,
    StageFinished,
    StageSkipped,
    StageStarted,
)
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildContext, BuildOptions
from imagecomposer.pipeline.inputs import ConfigurationInput
from imagecomposer.pipeline.stages import DEFAULT_STAGES, ConfigurationStage
from imagecomposer.resolver import Resolver
from imagecomposer.spec.model import Base, Image, Output, Spec
from tests.fixtures.debrepo import served_debian

log = logging.getLogger("imagecomposer.test")


class StandinConfiguration(ConfigurationStage):
    """The real stage's inputs; a small raw disk instead of a configured tree."""

    def run(self, ctx: BuildContext, inputs: ConfigurationInput) -> None:
        ctx.emit(ConfigurationStep(f"hostname {inputs.customizations.hostname}"))
        log.warning("a warning in the configuration stage")
        ctx.raw_path.parent.mkdir(parents=True, exist_ok=True)
        with ctx.raw_path.open("wb") as raw:
            raw.truncate(4 << 20)
            raw.write(b"a disk")
        atomic_write(ctx.layout_path, json.dumps({"table": "gpt"}))


STAGES = tuple(StandinConfiguration() if s.name == "configuration" else s
               for s in DEFAULT_STAGES)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Config]:
    with served_debian(tmp_path) as config:
        yield config


def between(events: list[Event], stage: str) -> list[Event]:
    """The events from ``stage``'s start to its end (both included)."""
    start = next(i for i, e in enumerate(events)
                 if isinstance(e, StageStarted) and e.stage == stage)
    end = next(i for i, e in enumerate(events)
               if isinstance(e, StageFinished) and e.stage == stage)
    return events[start:end + 1]


def test_every_event_of_every_stage_reaches_the_callback_in_order(
        config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = Spec(image=Image("events", Base("debian", "12")),
                output=Output(formats=("raw",), sbom=()))
    # the tree compose would install, in the installed-tree cache under the lock's hash and
    # the build epoch
    lock = Resolver(config).resolve(spec).lock
    tree = tmp_path / "installed"
    (tree / "var/lib/dpkg").mkdir(parents=True)
    epoch, _ = choose_epoch(inputs=lock.source_date)  # the newest Release date
    TreeCache(config.tree_cache_dir).store(Composer(config, epoch=epoch).tree_key(lock), tree)
    events: list[Event] = []
    pipeline = ImagePipeline(config, events=events.append, stages=STAGES)
    out = tmp_path / "out"

    report = pipeline.build(spec, BuildOptions(output_dir=out))

    assert [o.status for o in report.run.outcomes] == ["ran"] * 6, report.table()
    assert {e.build for e in events} == {"events"}
    started = [e.stage for e in events if isinstance(e, StageStarted)]
    assert started == ["validate", "packages", "compose", "configuration", "sign", "finalize"]
    packages = between(events, "packages")
    for kind in (MetadataLoaded, Resolved, FetchStarted, PackageFetched, Progress,
                 FetchFinished):
        assert [e for e in packages if isinstance(e, kind)], kind.__name__
    assert all(e.stage == "packages" for e in packages)
    fetched = [e for e in packages if isinstance(e, Progress)]
    assert fetched[-1] == Progress("packages fetched", len(lock.packages), len(lock.packages),
                                   "packages", build="events", stage="packages")
    assert InstallStep(f"installed tree restored from the cache ({lock.hash[:12]})",
                       build="events", stage="compose") in between(events, "compose")
    configuration = between(events, "configuration")
    assert ConfigurationStep("hostname None", build="events",
                             stage="configuration") in configuration
    assert BuildWarning("a warning in the configuration stage", "imagecomposer.test",
                        build="events", stage="configuration") in configuration
    export = [e for e in between(events, "finalize") if isinstance(e, ExportStep)]
    assert {e.kind for e in export} >= {"convert", "checksum", "commit"}

    # how long the stages took is in the result, not in the manifest (same inputs, same bytes)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "stage_timings" not in manifest
    assert all(o.seconds > 0 for o in report.run.outcomes if o.status == "ran")

    # again: up to date, then an image cache hit; every stage named once, no phantom flags
    events.clear()
    caplog.set_level(logging.INFO, logger="imagecomposer")
    again = pipeline.build(spec, BuildOptions(output_dir=tmp_path / "again"))
    assert again.image_cache_hit
    skipped = [(e.stage, e.reason) for e in events if isinstance(e, StageSkipped)]
    assert skipped == [("validate", "up to date"), ("packages", "up to date"),
                       ("compose", "image cache hit"), ("configuration", "image cache hit"),
                       ("sign", "image cache hit"), ("finalize", "image cache hit")]
    assert [e for e in events if isinstance(e, StageStarted)] == []
    assert caplog.text.count("image cache hit:") == 1
    assert "after --stage" not in caplog.text and "--skip-stage" not in caplog.text
    assert (tmp_path / "again" / "events.raw").read_bytes() == (out / "events.raw").read_bytes()

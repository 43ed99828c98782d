"""Stand-in compose and configuration stages for cluster tests (module-level: the build
processes of the workers unpickle them). Installing and configuring a real tree needs root
and the Debian archive; these stay hermetic and fast while the real validate, packages
(download through the shared store), sign and finalize stages run.

The raw disk holds the lock's package hashes and the spec's hostname: different specs give
different bytes, the same spec the same bytes. A spec whose image name starts with ``slow``
waits :data:`SLOW_SECONDS` in configuration, after writing ``WORK/building/NAME`` (which
worker is building it: the tests kill that one). ``$IMAGECOMPOSER_STANDIN_SECONDS`` makes
every configuration take that long (the cluster benchmark's stand-in for real work).
``$IMAGECOMPOSER_STANDIN_ENOSPC=PREFIX`` (set on one worker) fails the configuration of the
images whose name starts with PREFIX with ``OSError(ENOSPC)``: that worker's disk is full.
"""

from __future__ import annotations

import errno
import json
import os
import time

from imagecomposer.foundation.events import ConfigurationStep, InstallStep
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.pipeline.context import BuildContext
from imagecomposer.pipeline.inputs import ComposeInput, ConfigurationInput
from imagecomposer.pipeline.stages import DEFAULT_STAGES, ComposeStage, ConfigurationStage

SLOW_SECONDS = 5.0


class StandinCompose(ComposeStage):
    def run(self, ctx: BuildContext, inputs: ComposeInput) -> None:
        (ctx.installed_tree / "var/lib").mkdir(parents=True, exist_ok=True)
        ctx.emit(InstallStep(f"stand-in tree for {len(ctx.lock().packages)} packages"))


class StandinConfiguration(ConfigurationStage):
    def run(self, ctx: BuildContext, inputs: ConfigurationInput) -> None:
        name = ctx.spec.image.name
        full = os.environ.get("IMAGECOMPOSER_STANDIN_ENOSPC")
        if full and name.startswith(full):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(ctx.raw_path))
        if name.startswith("slow"):
            marks = ctx.config.core.work_dir / "building"
            marks.mkdir(parents=True, exist_ok=True)
            (marks / name).write_text("building\n")
            time.sleep(SLOW_SECONDS)
        time.sleep(float(os.environ.get("IMAGECOMPOSER_STANDIN_SECONDS", "0")))
        ctx.emit(ConfigurationStep(f"hostname {inputs.customizations.hostname}"))
        lock = ctx.lock()
        body = "\n".join([f"hostname {inputs.customizations.hostname}", lock.hash,
                          *(f"{p.name} {p.sha256}" for p in lock.packages)]).encode()
        ctx.raw_path.parent.mkdir(parents=True, exist_ok=True)
        with ctx.raw_path.open("wb") as raw:
            raw.truncate(1 << 20)
            raw.write(body)
        atomic_write(ctx.layout_path, json.dumps({"table": "gpt"}))


STAGES = tuple(StandinCompose() if s.name == "compose" else
               StandinConfiguration() if s.name == "configuration" else s
               for s in DEFAULT_STAGES)

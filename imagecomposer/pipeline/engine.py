"""The staged pipeline engine.

A pipeline is an ordered list of :class:`Stage` objects. Each stage declares named input
hashes and the earlier stages whose outputs it consumes (``consumes``); the engine adds the
fingerprints of those stages to its inputs, compares them with the workspace's record, and
runs only the stages whose inputs changed, saying why (``compose: started (input 'lock'
changed)``; ``packages: skipped, up to date``). A change to one stage's inputs reruns the
stages that consume its output, not every stage after it: a changed file in the spec reruns
validate and configuration, not packages and compose.

The engine knows nothing of images: the default stages live in
:mod:`imagecomposer.pipeline.stages`, and tests drive it with stages of their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType
from typing import Generic, Protocol, TypeVar

import attrs

from imagecomposer.foundation.errors import BuildTimeout, ImageComposerError, UsageError
from imagecomposer.pipeline.events import (
    EventSink,
    StageFailed,
    StageFinished,
    StageSkipped,
    StageStarted,
    log_event,
)
from imagecomposer.pipeline.workspace import StageRecord, Workspace

C = TypeVar("C", contravariant=True)
Ctx = TypeVar("Ctx")


class Stage(Protocol[C]):
    """One step of a build. ``C`` is the context object the pipeline passes around."""

    name: str
    consumes: tuple[str, ...]  # earlier stages whose outputs this one reads

    def inputs(self, ctx: C) -> Mapping[str, str]:
        """Named hashes of everything the stage's result depends on (cheap to compute)."""
        ...

    def outputs_present(self, ctx: C) -> bool:
        """Whether the outputs a completed run left are still in the workspace."""
        ...

    def run(self, ctx: C) -> None: ...


STAGE_INPUT = "stage:"  # input names of consumed stages' fingerprints


@attrs.frozen
class StageOutcome:
    stage: str
    status: str  # "ran" | "skipped" | "failed"
    reason: str
    seconds: float = 0.0


@attrs.frozen
class RunOptions:
    """Which stages run. Names are validated against the pipeline's stages."""

    selected: tuple[str, ...] | None = None  # spec build.stages; None: all
    until: str | None = None  # --stage S: up to and including S
    skip: tuple[str, ...] = ()  # --skip-stage S (repeatable)
    force: bool = False  # --no-cache: rerun every selected stage
    timeout: float | None = None  # seconds for the whole run


@attrs.frozen
class RunReport:
    build: str
    outcomes: tuple[StageOutcome, ...]
    seconds: float

    def table(self) -> str:
        """The per-stage timing table printed at the end of a build."""
        rows = [("stage", "status", "seconds", "reason")]
        rows += [(o.stage, o.status, f"{o.seconds:.1f}" if o.status != "skipped" else "-",
                  o.reason) for o in self.outcomes]
        rows.append(("total", "", f"{self.seconds:.1f}", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                         for r in rows)


class Engine(Generic[Ctx]):
    def __init__(self, stages: Sequence[Stage[Ctx]], *, events: EventSink | None = None) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names in {names}")
        self.stages = tuple(stages)
        self.events = events or log_event

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def plan(self, options: RunOptions) -> list[tuple[Stage[Ctx], str | None]]:
        """Each stage with None if it is to be considered, else the reason it is skipped."""
        for name in (options.until, *options.skip, *(options.selected or ())):
            if name is not None and name not in self.stage_names:
                raise UsageError(f"unknown stage '{name}' (stages: {', '.join(self.stage_names)})")
        plan: list[tuple[Stage[Ctx], str | None]] = []
        past_until = False
        for stage in self.stages:
            reason: str | None = None
            if past_until:
                reason = f"after --stage {options.until}"
            elif stage.name in options.skip:
                reason = "--skip-stage"
            elif options.selected is not None and stage.name not in options.selected:
                reason = "not in build.stages"
            plan.append((stage, reason))
            if stage.name == options.until:
                past_until = True
        return plan

    def run(self, ctx: Ctx, workspace: Workspace, options: RunOptions = RunOptions(), *,
            build: str = "build") -> RunReport:
        started = time.monotonic()
        outcomes: list[StageOutcome] = []
        records = workspace.records()
        fingerprints = {name: record.fingerprint for name, record in records.items()}
        with _deadline(options.timeout):
            for stage, skip_reason in self.plan(options):
                record = records.get(stage.name)
                if skip_reason is not None:
                    outcomes.append(StageOutcome(stage.name, "skipped", skip_reason))
                    self.events(StageSkipped(build, stage.name, skip_reason))
                    continue
                inputs = dict(stage.inputs(ctx))
                for consumed in stage.consumes:
                    inputs[f"{STAGE_INPUT}{consumed}"] = fingerprints.get(consumed, "")
                fingerprint = _fingerprint(stage.name, inputs)
                reason = _rerun_reason(record, inputs, options.force)
                if reason is None and not stage.outputs_present(ctx):
                    reason = "outputs missing"
                if reason is None:
                    outcomes.append(StageOutcome(stage.name, "skipped", "up to date"))
                    self.events(StageSkipped(build, stage.name, "up to date"))
                    fingerprints[stage.name] = fingerprint
                    continue
                self.events(StageStarted(build, stage.name, reason))
                t0 = time.monotonic()
                workspace.forget(stage.name)
                try:
                    stage.run(ctx)
                except BaseException as exc:
                    seconds = time.monotonic() - t0
                    text = str(exc) if isinstance(exc, ImageComposerError) else repr(exc)
                    self.events(StageFailed(build, stage.name, seconds, text))
                    raise
                seconds = time.monotonic() - t0
                workspace.record(stage.name, StageRecord(fingerprint, inputs, seconds))
                outcomes.append(StageOutcome(stage.name, "ran", reason, seconds))
                self.events(StageFinished(build, stage.name, seconds))
                fingerprints[stage.name] = fingerprint
        return RunReport(build, tuple(outcomes), time.monotonic() - started)


def _fingerprint(stage: str, inputs: Mapping[str, str]) -> str:
    blob = json.dumps({"stage": stage, "inputs": dict(inputs)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _rerun_reason(record: StageRecord | None, inputs: Mapping[str, str], force: bool) -> str | None:
    if force:
        return "forced (--no-cache)"
    if record is None:
        return "first run"
    for key in sorted(set(inputs) | set(record.inputs)):
        if inputs.get(key) != record.inputs.get(key):
            if key.startswith(STAGE_INPUT):
                return f"the output of {key.removeprefix(STAGE_INPUT)} changed"
            return f"input '{key}' changed"
    return None


@contextlib.contextmanager
def _deadline(timeout: float | None) -> Iterator[None]:
    """Raise :class:`BuildTimeout` in the main thread when ``timeout`` seconds have passed.

    The exception unwinds through the running stage like Ctrl-C does, so every stage's
    cleanup (and the runner's killing of child process groups) runs.
    """
    if timeout is None:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        raise UsageError("a build timeout needs the build to run in the main thread")

    def expire(signum: int, frame: FrameType | None) -> None:
        raise BuildTimeout(f"Build timed out after {_human(timeout)} (--timeout)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _human(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def parse_duration(text: str) -> float:
    """``30m``, ``1h30m``, ``90s``, ``45`` (seconds) → seconds."""
    import re

    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"invalid duration '{text}' (use e.g. 90s, 30m, 1h30m)")
    scale = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * scale[u] for n, u in parts)

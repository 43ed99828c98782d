"""The staged pipeline engine.

A pipeline is an ordered list of :class:`Stage` objects. Each stage builds its inputs as
ONE typed value (a frozen attrs instance: see :mod:`imagecomposer.pipeline.inputs`) and
runs on that value alone; the stage's key is the value's fingerprint
(:func:`imagecomposer.foundation.fingerprint.fingerprint`), so everything the stage's result
depends on is hashed, and nothing else. A stage that consumes the outputs of earlier stages
(``consumes``) receives their fingerprints (``upstream``) and keeps them in its value, in a
field named ``upstream``.

The engine compares each key with the workspace's record and runs only the stages whose
inputs changed, saying which field changed (``packages: started (input
'request.read_only_root' changed)``; ``compose: skipped, up to date``; ``sign: started (the
output of configuration changed)``). A change to one stage's inputs reruns the stages that
consume its output, not every stage after it.

Hooks run after a named stage (:class:`Hook`): they see the typed inputs every later stage
would have in this run (:class:`RunView`) and may end the run early by returning a reason,
with which the remaining stages are skipped (the image cache: ``image cache hit``).

The engine knows nothing of images: the default stages live in
:mod:`imagecomposer.pipeline.stages`, and tests drive it with stages of their own.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Any, Generic, Protocol, TypeVar

import attrs

from imagecomposer.foundation.console import Console
from imagecomposer.foundation.errors import (
    BuildTimeout,
    ImageComposerError,
    UsageError,
    in_stage,
    os_error_message,
)
from imagecomposer.foundation.events import (
    EventSink,
    StageFailed,
    StageFinished,
    StageSkipped,
    StageStarted,
)
from imagecomposer.foundation.fingerprint import (
    Fingerprint,
    changed_fields,
    fingerprint_fields,
)
from imagecomposer.pipeline.workspace import StageRecord, Workspace

C = TypeVar("C", contravariant=True)
Ctx = TypeVar("Ctx")
I = TypeVar("I")  # noqa: E741 - a stage's typed inputs

UPSTREAM = "upstream"  # the field of a stage's inputs holding consumed stages' fingerprints


class Stage(Protocol[C, I]):
    """One step of a build. ``C`` is the context object the pipeline passes around, ``I``
    the stage's typed inputs."""

    name: str
    consumes: tuple[str, ...]  # earlier stages whose outputs this one reads

    def inputs(self, ctx: C, upstream: Mapping[str, str]) -> I:
        """Everything the stage's result depends on, as one value (cheap to compute);
        ``upstream`` (the consumed stages' fingerprints) must be kept in its ``upstream``."""
        ...

    def outputs_present(self, ctx: C) -> bool:
        """Whether the outputs a completed run left are still in the workspace."""
        ...

    def run(self, ctx: C, inputs: I) -> None:
        """Do the work from ``inputs`` (and only operational settings of ``ctx``)."""
        ...


@attrs.frozen
class StageOutcome:
    stage: str
    status: str  # "ran" | "skipped" | "failed"
    reason: str
    seconds: float = 0.0


@attrs.frozen
class StageInputs:
    """A stage's typed inputs and their fingerprint (``key.digest`` is the stage's key)."""

    stage: str
    value: Any
    key: Fingerprint


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


class RunView(Generic[Ctx]):
    """What a hook sees of the run in progress."""

    def __init__(self, run: _Run[Ctx]) -> None:
        self._run = run

    @property
    def outcomes(self) -> tuple[StageOutcome, ...]:
        return tuple(self._run.outcomes)

    def outcome(self, stage: str) -> StageOutcome | None:
        return next((o for o in self._run.outcomes if o.stage == stage), None)

    def stages_after(self, stage: str) -> tuple[str, ...]:
        names = [s.name for s in self._run.engine.stages]
        return tuple(names[names.index(stage) + 1:])

    def inputs(self, stage: str) -> StageInputs:
        """The typed inputs ``stage`` has in this run (a stage still to come: as if every
        stage between ran), computed once per run."""
        return self._run.inputs_of(stage)


@attrs.frozen
class Hook(Generic[Ctx]):
    """``call(ctx, view)`` after stage ``after`` (ran, up to date or skipped); a returned
    reason skips every remaining stage with it."""

    after: str
    call: Callable[[Ctx, RunView[Ctx]], str | None]


class Engine(Generic[Ctx]):
    def __init__(self, stages: Sequence[Stage[Ctx, Any]], *,
                 events: EventSink | None = None) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names in {names}")
        self.stages = tuple(stages)
        self.events = events or Console()  # log lines, as the CLI shows them

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def plan(self, options: RunOptions) -> list[tuple[Stage[Ctx, Any], str | None]]:
        """Each stage with None if it is to be considered, else the reason it is skipped."""
        for name in (options.until, *options.skip, *(options.selected or ())):
            if name is not None and name not in self.stage_names:
                raise UsageError(f"unknown stage '{name}' (stages: {', '.join(self.stage_names)})")
        plan: list[tuple[Stage[Ctx, Any], str | None]] = []
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
            build: str = "build", hooks: Sequence[Hook[Ctx]] = (),
            events: EventSink | None = None) -> RunReport:
        """Run the planned stages once, in order; ``events`` overrides the engine's sink."""
        started = time.monotonic()
        run = _Run(self, ctx, workspace, build, events or self.events)
        with _deadline(options.timeout):
            run.execute(self.plan(options), options.force, hooks)
        return RunReport(build, tuple(run.outcomes), time.monotonic() - started)


class _Run(Generic[Ctx]):
    """One engine run: the fingerprints so far, memoized inputs, outcomes."""

    def __init__(self, engine: Engine[Ctx], ctx: Ctx, workspace: Workspace, build: str,
                 events: EventSink) -> None:
        self.engine = engine
        self.ctx = ctx
        self.workspace = workspace
        self.build = build
        self.events = events
        self.records = workspace.records()
        # a stage's fingerprint as this run leaves it (a stage not considered: its record's)
        self.fingerprints = {name: r.fingerprint for name, r in self.records.items()}
        self.done: set[str] = set()
        self.outcomes: list[StageOutcome] = []
        self._memo: dict[str, tuple[tuple[tuple[str, str], ...], StageInputs]] = {}

    def stage(self, name: str) -> Stage[Ctx, Any]:
        return next(s for s in self.engine.stages if s.name == name)

    def inputs_of(self, name: str) -> StageInputs:
        stage = self.stage(name)
        upstream = {c: self.fingerprints.get(c, "") if c in self.done
                    else self.inputs_of(c).key.digest for c in stage.consumes}
        memo_key = tuple(sorted(upstream.items()))
        memo = self._memo.get(name)
        if memo is not None and memo[0] == memo_key:
            return memo[1]
        value = stage.inputs(self.ctx, upstream)
        key = fingerprint_fields(value)
        missing = [c for c in stage.consumes if f"{UPSTREAM}.{c}" not in key.fields]
        if missing:
            raise TypeError(f"the inputs of stage {name} must hold the fingerprints of the "
                            f"stages it consumes in '{UPSTREAM}' (missing: {missing})")
        found = StageInputs(name, value, key)
        self._memo[name] = (memo_key, found)
        return found

    def skip(self, name: str, reason: str) -> None:
        self.outcomes.append(StageOutcome(name, "skipped", reason))
        self.events(StageSkipped(reason, build=self.build, stage=name))

    def execute(self, plan: list[tuple[Stage[Ctx, Any], str | None]], force: bool,
                hooks: Sequence[Hook[Ctx]]) -> None:
        ended: str | None = None  # a hook's reason to skip the rest
        for stage, skip_reason in plan:
            if skip_reason is not None or ended is not None:
                self.skip(stage.name, skip_reason or str(ended))
            else:
                self._consider(stage, force)
            self.done.add(stage.name)
            for hook in hooks:
                if ended is None and hook.after == stage.name:
                    ended = hook.call(self.ctx, RunView(self))

    def _consider(self, stage: Stage[Ctx, Any], force: bool) -> None:
        found = self.inputs_of(stage.name)
        record = self.records.get(stage.name)
        reason = rerun_reason(record, found.key.fields, force)
        if reason is None and not stage.outputs_present(self.ctx):
            reason = "outputs missing"
        if reason is None:
            self.skip(stage.name, "up to date")
            self.fingerprints[stage.name] = found.key.digest
            return
        self.events(StageStarted(reason, build=self.build, stage=stage.name))
        t0 = time.monotonic()
        self.workspace.forget(stage.name)
        try:
            stage.run(self.ctx, found.value)
        except BaseException as exc:
            seconds = time.monotonic() - t0
            in_stage(exc, stage.name, seconds)  # the one error message names the stage
            text = (str(exc) if isinstance(exc, ImageComposerError) else
                    os_error_message(exc) if isinstance(exc, OSError) else repr(exc))
            self.events(StageFailed(seconds, text, build=self.build, stage=stage.name))
            raise
        seconds = time.monotonic() - t0
        self.workspace.record(stage.name, StageRecord(found.key.digest, dict(found.key.fields),
                                                      seconds))
        self.outcomes.append(StageOutcome(stage.name, "ran", reason, seconds))
        self.events(StageFinished(seconds, build=self.build, stage=stage.name))
        self.fingerprints[stage.name] = found.key.digest


def rerun_reason(record: StageRecord | None, fields: Mapping[str, str], force: bool
                 ) -> str | None:
    """Why a stage with these input fields runs again, or None when it is up to date."""
    if force:
        return "forced by --no-cache"
    if record is None:
        return "first run"
    changed = changed_fields(record.inputs, fields)
    if not changed:
        return None
    upstream = [c.removeprefix(f"{UPSTREAM}.") for c in changed
                if c.startswith(f"{UPSTREAM}.")]
    if upstream:
        return f"the output of {upstream[0]} changed"
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    return f"input '{changed[0]}' changed{more}"


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
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"invalid duration '{text}' (use e.g. 90s, 30m, 1h30m)")
    scale = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * scale[u] for n, u in parts)

"""Structured progress events for library callers (and the CLI's log lines and bars).

A build reports through one callable, ``EventSink``; callers pass their own to watch a build
from Jupyter or other tooling. Events are frozen attrs classes so they can be logged,
compared and serialized (``attrs.asdict``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

log = logging.getLogger("imagecomposer")


@attrs.frozen
class Event:
    build: str  # image name of the build the event belongs to


@attrs.frozen
class StageStarted(Event):
    stage: str
    reason: str  # why it runs: "first run", "input 'lock' changed", "forced (--no-cache)"


@attrs.frozen
class StageFinished(Event):
    stage: str
    seconds: float


@attrs.frozen
class StageSkipped(Event):
    stage: str
    reason: str  # "up to date", "not in build.stages", "--skip-stage", "after --stage S"


@attrs.frozen
class StageFailed(Event):
    stage: str
    seconds: float
    error: str


@attrs.frozen
class Progress(Event):
    """Work inside a stage: ``done`` of ``total`` units (bytes, packages, files)."""

    stage: str
    what: str
    done: int
    total: int | None = None
    unit: str = ""


EventSink = Callable[[Event], None]


def log_event(event: Event) -> None:
    """The default sink: one log line per stage event; progress only at debug level."""
    match event:
        case StageStarted(build=b, stage=s, reason=r):
            log.info("[%s] %s: started (%s)", b, s, r)
        case StageFinished(build=b, stage=s, seconds=t):
            log.info("[%s] %s: done in %.1f s", b, s, t)
        case StageSkipped(build=b, stage=s, reason=r):
            log.info("[%s] %s: skipped, %s", b, s, r)
        case StageFailed(build=b, stage=s, seconds=t, error=e):
            log.error("[%s] %s: failed after %.1f s: %s", b, s, t, e.splitlines()[0] if e else "")
        case Progress(build=b, stage=s, what=w, done=d, total=n, unit=u):
            log.debug("[%s] %s: %s %d/%s %s", b, s, w, d, n if n is not None else "?", u)
        case _:
            log.debug("%s", event)


def fan_out(*sinks: EventSink | None) -> EventSink:
    """One sink that forwards to each of ``sinks``."""
    active = [s for s in sinks if s is not None]

    def sink(event: Event) -> None:
        for s in active:
            s(event)

    return sink

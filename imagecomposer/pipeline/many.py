"""Several builds at once: :func:`build_many`, what ``imagecomposer build a.yml b.yml`` runs.

Each build runs in a process of its own, started with multiprocessing's *spawn* method, at
most ``max_concurrent`` (default ``core.max_concurrent_builds``) at a time. Processes, not
threads, because a build owns process-wide things: the ``--timeout`` alarm (SIGALRM is
delivered to the main thread only), the SIGINT/SIGTERM handlers that turn a signal into a
clean unwinding, and the child-process reaper that kills a killed build's tools
(:mod:`imagecomposer.foundation.children`). *Spawn*, not *fork*: the caller may hold threads
and locks (a notebook, a download pool) that a forked copy would inherit half-taken.

Every event of every build reaches ``events`` in the calling thread, in order per build;
each build's log records are forwarded to the caller's ``imagecomposer`` loggers, prefixed
with the image name. A failure of one build does not stop the others; each
:class:`BuildResult` says whether its build succeeded, and the error if not.

Interruption: Ctrl-C reaches every build (they share the terminal's process group); a
signal to the caller alone (SIGTERM, or an exception in ``events``) is passed on as SIGTERM.
Each build unwinds once, cleaning up as a single build does; one that has not ended after
:data:`GRACE` seconds is killed. ``cancel`` (a :class:`threading.Event`, set from any
thread) does the same without an exception: the running builds are interrupted as by
SIGTERM, the ones not started never start, and each comes back as a ``BuildInterrupted``
result (a cluster worker cancels its build so, :mod:`imagecomposer.cluster.worker`).
If the caller is killed outright (SIGKILL), every build gets SIGKILL from the kernel
(``PR_SET_PDEATHSIG``) and its reaper kills the tools it ran.

As with any multiprocessing code, a script that calls :func:`build_many` at import time
must do it under ``if __name__ == "__main__":`` (each build process imports the main module).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

import attrs

from imagecomposer.config import load_config
from imagecomposer.config.model import Config
from imagecomposer.foundation import children
from imagecomposer.foundation.errors import (
    BuildInterrupted,
    ImageComposerError,
    describe,
    in_stage,
    stage_of,
)
from imagecomposer.foundation.events import EventSink
from imagecomposer.pipeline.build import BuildReport, ImagePipeline
from imagecomposer.pipeline.context import BuildContext, BuildOptions
from imagecomposer.pipeline.engine import Stage
from imagecomposer.pipeline.stages import DEFAULT_STAGES
from imagecomposer.spec.model import Spec

log = logging.getLogger("imagecomposer.pipeline")

GRACE = 60.0  # seconds an interrupted build has to clean up before it is killed
CANCEL_POLL = 0.5  # seconds between looks at build_many's ``cancel`` event
_SPAWN = multiprocessing.get_context("spawn")


@attrs.frozen
class BuildResult:
    """One build of :func:`build_many`: its report, or the error that ended it."""

    spec: str  # the spec file as given, or the image name of a Spec object
    ok: bool
    report: BuildReport | None = None
    error: str | None = None  # the error message, as the CLI prints it (with the stage)
    error_type: str | None = None  # its class name (ValidationError, WorkspaceBusy, ...)
    exit_code: int = 0  # what the CLI exits with for it: 1 failed, 2 usage, 130 interrupted
    worker: str | None = None  # a cluster build (imagecomposer.cluster): the worker's name
    output: Path | None = None  # a cluster build: its outputs in the shared output store


def build_many(specs: Sequence[Spec | Path | str], *, config: Config | None = None,
               options: BuildOptions | None = None, events: EventSink | None = None,
               max_concurrent: int | None = None,
               variables: Mapping[str, str] | None = None,
               stages: Sequence[Stage[BuildContext, Any]] = DEFAULT_STAGES,
               cancel: threading.Event | None = None) -> list[BuildResult]:
    """Build every spec (objects, or files loaded with ``variables``), at most
    ``max_concurrent`` at once; the results are in the order of ``specs``. ``stages``
    (picklable: instances of module-level classes) replaces the default stages; ``cancel``,
    once set, interrupts the builds (checked every :data:`CANCEL_POLL` seconds)."""
    config = config if config is not None else load_config().config
    options = options or BuildOptions()
    limit = max(1, max_concurrent or config.core.max_concurrent_builds)
    level = _forwarded_level()
    results: list[BuildResult | None] = [None] * len(specs)
    pending = list(enumerate(specs))
    running: list[_Child] = []
    try:
        while pending or running:
            while pending and len(running) < limit and not (cancel and cancel.is_set()):
                index, spec = pending.pop(0)
                running.append(_Child.start(index, spec, config, options, variables, level,
                                            tuple(stages)))
            for child in _serve(running, events, None if cancel is None else CANCEL_POLL):
                running.remove(child)
                results[child.index] = child.outcome()
            if cancel is not None and cancel.is_set():
                _cancel(running, pending, results, events)
                break
    except BaseException:
        _stop(running, events)
        raise
    return [r for r in results if r is not None]


def _cancel(running: list[_Child], pending: list[tuple[int, Spec | Path | str]],
            results: list[BuildResult | None], events: EventSink | None) -> None:
    """Interrupt the running builds (each cleans up as after Ctrl-C); the others never
    start."""
    stopping = list(running)
    _stop(running, events)
    for child in stopping:
        results[child.index] = child.outcome()
    for index, spec in pending:
        results[index] = BuildResult(_label(spec), False,
                                     error="Interrupted: cancelled before it started",
                                     error_type="BuildInterrupted",
                                     exit_code=BuildInterrupted.exit_code)
    pending.clear()
    running.clear()


def _label(spec: Spec | Path | str) -> str:
    return spec.image.name if isinstance(spec, Spec) else str(spec)


@attrs.define
class _Child:
    index: int
    label: str
    process: BaseProcess
    conn: Connection
    result: BuildResult | None = None
    open: bool = True  # the pipe has not reached its end

    @classmethod
    def start(cls, index: int, spec: Spec | Path | str, config: Config, options: BuildOptions,
              variables: Mapping[str, str] | None, level: int,
              stages: tuple[Stage[BuildContext, Any], ...]) -> _Child:
        reader, writer = _SPAWN.Pipe(duplex=False)
        process = _SPAWN.Process(
            target=_child_main, name=f"imagecomposer-build-{index}",
            args=(writer, os.getpid(), spec, config, options, dict(variables or {}), level,
                  stages))
        process.start()  # from this thread: PR_SET_PDEATHSIG follows it
        writer.close()
        return cls(index, _label(spec), process, reader)

    def receive(self, events: EventSink | None, limit: int | None = None) -> None:
        """Handle the messages waiting in the pipe (at most ``limit``: a chatty build must
        not starve the others)."""
        handled = 0
        while self.open and (limit is None or handled < limit) and self.conn.poll():
            handled += 1
            try:
                kind, payload = self.conn.recv()
            except (EOFError, OSError):
                self.open = False
                break
            if kind == "event" and events is not None:
                events(payload)
            elif kind == "log":
                logging.getLogger(payload.name).handle(payload)
            elif kind == "result":
                self.result = payload

    def outcome(self) -> BuildResult:
        self.process.join()
        self.conn.close()
        if self.result is not None:
            return self.result
        code = self.process.exitcode
        how = (f"was killed by signal {signal.Signals(-code).name}" if code is not None
               and code < 0 else f"ended with exit code {code}")
        return BuildResult(self.label, False, error=f"the build process {how}",
                           error_type="BuildProcessDied", exit_code=1)


def _serve(running: list[_Child], events: EventSink | None,
           timeout: float | None = None) -> list[_Child]:
    """Forward what the builds sent; return the builds that have ended."""
    conns = {c.conn: c for c in running if c.open}
    sentinels = {c.process.sentinel: c for c in running}
    ready = wait([*conns, *sentinels], timeout)
    for item in ready:
        if isinstance(item, Connection) and item in conns:
            conns[item].receive(events, limit=256)
    ended = [sentinels[item] for item in ready if isinstance(item, int)]
    for child in ended:
        child.receive(events)  # what it sent before it ended
    return ended


def _stop(running: list[_Child], events: EventSink | None) -> None:
    """Interrupt every running build once, let it clean up, kill it after GRACE (also when
    the caller's ``events`` fails or a second Ctrl-C comes meanwhile)."""
    for child in running:
        if child.process.pid is not None and child.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    try:
        while running and time.monotonic() < deadline:
            try:
                ended = _serve(running, events, timeout=0.2)
            except Exception:  # the caller's callback: stop calling it
                events = None
                continue
            for child in ended:
                running.remove(child)
                child.process.join()
                if child.result is not None and child.result.error:
                    log.error("%s: %s", child.label, child.result.error)  # where it stopped
    finally:
        for child in running:
            log.error("%s is still running after it was interrupted: killing it",
                      child.label)
            child.process.kill()
            child.process.join()


# --- in the build process -----------------------------------------------------------------


class _Sender:
    """Messages to the parent, one at a time (events and log records come from several
    threads); a parent that is gone is ignored (the kernel kills this process then)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def __call__(self, kind: str, payload: Any) -> None:
        with self.lock, contextlib.suppress(OSError, ValueError):
            self.conn.send((kind, payload))


class _ForwardLogs(logging.Handler):
    """Send log records to the parent, as plain text with the build's name in front."""

    def __init__(self, send: _Sender, level: int) -> None:
        super().__init__(level)
        self.send = send
        self.prefix = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            if self.prefix and not message.startswith("["):
                message = self.prefix + message
            plain = logging.makeLogRecord({
                "name": record.name, "levelno": record.levelno,
                "levelname": record.levelname, "msg": message, "pathname": record.pathname,
                "lineno": record.lineno, "funcName": record.funcName,
                "created": record.created, "msecs": record.msecs,
                "relativeCreated": record.relativeCreated, "thread": record.thread,
                "threadName": record.threadName, "process": record.process,
                "processName": record.processName})
            self.send("log", plain)
        except Exception:  # logging must never end a build
            self.handleError(record)


def _interrupt_once() -> None:
    """SIGINT or SIGTERM unwinds the build (BuildInterrupted) once; a second signal while
    it cleans up is ignored, so the cleanup is never cut short."""
    fired = threading.Event()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if fired.is_set():
            return
        fired.set()
        raise BuildInterrupted(f"Interrupted by signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _child_main(conn: Connection, parent: int, spec: Spec | Path | str, config: Config,
                options: BuildOptions, variables: dict[str, str], level: int,
                stages: tuple[Stage[BuildContext, Any], ...]) -> None:
    children.die_with(parent)
    _interrupt_once()
    send = _Sender(conn)
    forward = _ForwardLogs(send, level)
    logger = logging.getLogger("imagecomposer")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(forward)
    logger.setLevel(level)
    logger.propagate = False
    label = _label(spec)
    try:
        if not isinstance(spec, Spec):
            spec = Spec.load(spec, variables=variables, allowed_paths=config.core.allowed_paths)
        forward.prefix = f"[{spec.image.name}] "
        report = ImagePipeline(config, events=lambda event: send("event", event),
                               progress_bar=False, stages=stages).build(spec, options)
        result = BuildResult(label, True, report)
    except ImageComposerError as exc:
        result = BuildResult(label, False, error=describe(exc), error_type=type(exc).__name__,
                             exit_code=exc.exit_code)
    except KeyboardInterrupt as exc:
        interrupted = BuildInterrupted("Interrupted")
        where = stage_of(exc)
        if where is not None:
            in_stage(interrupted, *where)
        result = BuildResult(label, False, error=describe(interrupted),
                             error_type="BuildInterrupted",
                             exit_code=BuildInterrupted.exit_code)
    except OSError as exc:  # one line naming the path, as the CLI shows it
        log.debug("build of %s failed", label, exc_info=True)
        result = BuildResult(label, False, error=describe(exc), error_type=type(exc).__name__,
                             exit_code=1)
    except Exception as exc:  # reported as a result; the traceback at debug level
        log.debug("build of %s failed", label, exc_info=True)
        result = BuildResult(label, False, error=f"internal error: {describe(exc)}",
                             error_type=type(exc).__name__, exit_code=1)
    send("result", result)
    conn.close()
    # The result is sent: nothing of this process is needed any more. A transfer thread
    # still blocked in a read from a stalled mirror must not hold the exit until its stall
    # timeout (interpreter shutdown joins every pool thread): leave at once.
    logging.shutdown()
    os._exit(0)


def _forwarded_level() -> int:
    """The lowest level the caller's ``imagecomposer`` log handlers would show."""
    logger = logging.getLogger("imagecomposer")
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers += current.handlers
        current = current.parent if current.propagate else None
    lowest = min((h.level for h in handlers), default=logging.WARNING)
    return max(logger.getEffectiveLevel(), lowest)

"""The CLI's view of a build: a few log lines a person reads, a progress line on a terminal.

:class:`Console` is an ordinary consumer of the :mod:`imagecomposer.foundation.events`
stream: the pipeline attaches one to every build, and a library caller can pass one as
``events=`` to :class:`~imagecomposer.resolver.Resolver` or
:meth:`~imagecomposer.cache.PackageCache.fetch` used alone. Lines go through :mod:`logging`
(``imagecomposer`` loggers), so the caller's logging set-up decides where they land.

At INFO a build says what a person wants to read: each stage's start (with the reason) and
end (with its time), counts and sizes (packages resolved and downloaded, packages being
installed), and the warnings; the steps inside a stage, host command lines and their output
are DEBUG. Every line rendered from an event carries ``imagecomposer_event=True`` on its log
record (:data:`EVENT_RECORD`), so that a consumer writing the events themselves (``--log-format
json``) can leave those lines out.

Progress (downloads, and every :class:`~imagecomposer.foundation.events.Progress` event: dpkg's
unpacked and configured packages, the initramfs, disk assembly, conversions, hashing) is a
line redrawn in place at the bottom of a terminal (:data:`STATUS`; log lines written through
a :class:`TerminalHandler` meanwhile erase it and redraw it below them). On anything else
it is a plain log line for a step still running after ``interval`` seconds, then again every
``interval`` seconds, so that a CI log shows a long step is alive without a line per package.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from imagecomposer.foundation.events import (
    BuildEnded,
    BuildWarning,
    ConfigurationStep,
    DiskStep,
    DownloadProgress,
    Event,
    ExportStep,
    FetchFinished,
    FetchStarted,
    InstallStep,
    MetadataLoaded,
    PackageFetched,
    Progress,
    Resolved,
    StageFailed,
    StageFinished,
    StageSkipped,
    StageStarted,
)
from imagecomposer.foundation.units import human_size

log = logging.getLogger("imagecomposer")
packages_log = logging.getLogger("imagecomposer.pipeline.packages")

EVENT_RECORD = "imagecomposer_event"  # log record attribute: this line renders an event
_RENDERED = {EVENT_RECORD: True}
PLAIN_INTERVAL = 30.0  # seconds between plain progress lines of one step
REDRAW = 0.1  # seconds between redraws of the terminal's progress line


class StatusLine:
    """The one line at the bottom of a terminal that progress redraws in place.

    :meth:`hidden` erases it for the duration of a ``with`` block (a log line being
    written) and draws it again afterwards; a text wider than the terminal is cut, so that
    ``\\r`` always returns to its start.
    """

    def __init__(self) -> None:
        self.stream: TextIO | None = None
        self.text = ""
        self._lock = threading.RLock()

    def show(self, stream: TextIO, text: str) -> None:
        with self._lock:
            width = shutil.get_terminal_size((100, 24)).columns - 1
            self.stream, self.text = stream, text[:max(width, 20)]
            self._write("\r\033[K" + self.text)

    def clear(self) -> None:
        with self._lock:
            if self.text:
                self._write("\r\033[K")
            self.text = ""

    @contextlib.contextmanager
    def hidden(self) -> Iterator[None]:
        with self._lock:
            shown = self.text
            if shown:
                self._write("\r\033[K")
            try:
                yield
            finally:
                if shown and self.text == shown:
                    self._write(shown)

    def _write(self, text: str) -> None:
        if self.stream is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text)
            self.stream.flush()


STATUS = StatusLine()


class TerminalHandler(logging.StreamHandler[TextIO]):
    """A log handler for a terminal that also shows :data:`STATUS`: each line is written
    above the progress line, never into it."""

    def emit(self, record: logging.LogRecord) -> None:
        with STATUS.hidden():
            super().emit(record)


def _bar(done: int, total: int | None, width: int = 20) -> str:
    if not total:
        return ""
    share = min(max(done / total, 0.0), 1.0)
    return "[" + ("#" * int(share * width)).ljust(width) + "] "


def _amount(done: int, total: int | None, unit: str) -> str:
    if unit == "bytes":
        return human_size(done) + (f"/{human_size(total)}" if total else "")
    counted = f"{done}/{total}" if total else str(done)
    return f"{counted} {unit}".rstrip()


class Console:
    """Render events; ``tty=None`` detects whether ``stream`` is a terminal; ``interval``:
    seconds between plain progress lines when it is not one."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None,
                 interval: float = PLAIN_INTERVAL) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self.total_bytes = 0
        self.total_packages = 0
        self.done_bytes = 0
        self.done_packages = 0
        self.fetching = False
        self.start = time.monotonic()
        self.last_line = 0.0
        self.repositories: list[MetadataLoaded] = []
        self.steps: dict[tuple[str, str], tuple[float, float]] = {}  # (started, last line)
        self._lock = threading.RLock()
        self._current: tuple[str, float] | None = None  # the terminal's progress line
        self._ticker: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._render(event)

    def _render(self, event: Event) -> None:
        s = event.stage
        match event:
            case StageStarted(reason=r):
                self._clear()
                self.steps.clear()
                log.info("%s: started (%s)", s, r, extra=_RENDERED)
            case StageFinished(seconds=t):
                self._clear()
                log.info("%s: done in %.1f s", s, t, extra=_RENDERED)
            case StageSkipped(reason=r):
                # the stages after --stage S: the user asked for that, the table shows it
                level = logging.DEBUG if r.startswith("after --stage") else logging.INFO
                log.log(level, "%s: skipped, %s", s, r, extra=_RENDERED)
            case StageFailed(seconds=t, error=e):
                # the error itself is reported once, by whoever catches it (the CLI)
                self._clear()
                log.debug("%s: failed after %.1f s: %s", s, t, e, extra=_RENDERED)
            case InstallStep(what=w):
                log.info("%s: %s", s or "compose", w, extra=_RENDERED)
            case ConfigurationStep(what=w):
                log.debug("%s", w, extra=_RENDERED)
            case DiskStep(what=w):
                log.debug("disk: %s", w, extra=_RENDERED)
            case ExportStep(kind=k, name=n, seconds=t):
                log.debug("%s %s in %.2f s", k, n, t, extra=_RENDERED)
            case Progress():
                self._progress(event)
            case BuildWarning():
                pass  # the warning's own log line is already out
            case BuildEnded(ok=ok, seconds=t, output=o):
                self._clear()
                log.debug("build %s %s after %.1f s%s", event.build,
                          "succeeded" if ok else "failed", t, f": {o}" if o else "",
                          extra=_RENDERED)
            case _:
                self._packages(event)

    # --- progress ---------------------------------------------------------------------------

    def _progress(self, event: Progress) -> None:
        if self.fetching:
            return  # the download bar shows the packages being fetched
        key = (event.stage, event.what)
        now = time.monotonic()
        started, last = self.steps.get(key, (now, now))
        finished = event.total is not None and event.done >= event.total
        text = (f"{event.stage + ': ' if event.stage else ''}{event.what} "
                f"{_bar(event.done, event.total)}{_amount(event.done, event.total, event.unit)}")
        if self.tty:
            if finished:
                self.steps.pop(key, None)
                self._clear()
            elif now - last >= REDRAW or key not in self.steps:
                self.steps[key] = (started, now)
                self._show(text, started)
            return
        if finished:
            self.steps.pop(key, None)
        elif now - last >= self.interval:
            self.steps[key] = (started, now)
            log.info("%s (%.0f s)", text, now - started, extra=_RENDERED)
        else:
            self.steps[key] = (started, last)

    def _show(self, text: str, started: float) -> None:
        """Draw the progress line; a ticker redraws it every second with the time spent,
        so a step that reports rarely (one big filesystem) still shows it is alive."""
        self._current = (text, started)
        STATUS.show(self.stream, f"{text} {time.monotonic() - started:.0f} s")
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="console-progress",
                                            daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while True:
            time.sleep(1.0)
            with self._lock:
                if self._current is None:
                    self._ticker = None
                    return
                text, started = self._current
                STATUS.show(self.stream, f"{text} {time.monotonic() - started:.0f} s")

    def _clear(self) -> None:
        if self.tty:
            self._current = None
            STATUS.clear()

    # --- packages ---------------------------------------------------------------------------

    def _packages(self, event: Event) -> None:
        if isinstance(event, MetadataLoaded):
            how = "cached" if event.from_cache else "fetched"
            self.repositories.append(event)
            packages_log.debug("repository %s: %d packages (%s, %.2f s)", event.repository,
                               event.packages, how, event.seconds, extra=_RENDERED)
        elif isinstance(event, Resolved):
            repos = self.repositories
            self.repositories = []
            where = (f" from {len(repos)} repositories ({sum(r.packages for r in repos)} "
                     f"packages)" if repos else "")
            packages_log.info("%s: resolved %d packages (%s)%s in %.1f s",
                              event.stage or "packages", event.packages,
                              human_size(event.download_bytes), where, event.seconds,
                              extra=_RENDERED)
        elif isinstance(event, FetchStarted):
            self.total_bytes = event.download_bytes
            self.total_packages = event.download_packages
            self.done_bytes = self.done_packages = 0
            self.fetching = event.download_packages > 0
            self.start = time.monotonic()
            self.last_line = 0.0 if self.tty else self.start  # plain lines: after interval
            packages_log.debug("packages: %d in the lock, %d cached, %d to download (%s)",
                               event.packages, event.cached, event.download_packages,
                               human_size(event.download_bytes), extra=_RENDERED)
        elif isinstance(event, DownloadProgress):
            self.done_bytes += event.bytes
            self._update()
        elif isinstance(event, PackageFetched):
            packages_log.debug("%s %s (%s): %s", "downloaded" if event.downloaded else
                               "from the cache:", event.package, human_size(event.size),
                               event.path, extra=_RENDERED)
            if event.downloaded:
                self.done_packages += 1
                self._update()
        elif isinstance(event, FetchFinished):
            self.fetching = False
            self._clear()
            if event.downloaded:
                rate = event.downloaded_bytes / event.seconds if event.seconds > 0 else 0.0
                packages_log.info("%s: downloaded %d packages (%s, %s/s), %d from the cache, "
                                  "in %.1f s", event.stage or "packages", event.downloaded,
                                  human_size(event.downloaded_bytes), human_size(rate),
                                  event.cached, event.seconds, extra=_RENDERED)
            else:
                packages_log.info("%s: all %d packages in the cache",
                                  event.stage or "packages", event.cached, extra=_RENDERED)
        else:
            log.debug("%s", event, extra=_RENDERED)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = self.done_bytes / elapsed
        left = max(self.total_bytes - self.done_bytes, 0)
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        return (f"{_bar(self.done_bytes, self.total_bytes or None, 24)}"
                f"{self.done_packages}/{self.total_packages} packages "
                f"{human_size(self.done_bytes)}/{human_size(self.total_bytes)} "
                f"{human_size(rate)}/s ETA {eta}")

    def _update(self) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self.last_line >= REDRAW or self.done_packages == self.total_packages:
                STATUS.show(self.stream, "downloading: " + self.line())
                self.last_line = now
        elif now - self.last_line >= self.interval:
            packages_log.info("downloading: %s", self.line(), extra=_RENDERED)
            self.last_line = now

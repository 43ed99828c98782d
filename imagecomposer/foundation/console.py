"""The CLI's view of a build: log lines for every event, a download bar on a terminal.

:class:`Console` is an ordinary consumer of the :mod:`imagecomposer.foundation.events`
stream: the pipeline attaches one to every build, and a library caller can pass one as
``events=`` to :class:`~imagecomposer.resolver.Resolver` or
:meth:`~imagecomposer.cache.PackageCache.fetch` used alone. Lines go through :mod:`logging`
(``imagecomposer`` loggers), so the caller's logging set-up decides where they land; the
download bar is drawn on ``stream`` when it is a terminal, else every ``interval`` seconds
a ``downloading:`` line is logged.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from imagecomposer.foundation.events import (
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


def _prefix(event: Event) -> str:
    return f"[{event.build}] " if event.build else ""


class Console:
    """Render events; ``tty=None`` detects whether ``stream`` is a terminal."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None,
                 interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self.total_bytes = 0
        self.total_packages = 0
        self.done_bytes = 0
        self.done_packages = 0
        self.start = time.monotonic()
        self.last_line = 0.0
        self._lock = threading.RLock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._render(event)

    def _render(self, event: Event) -> None:
        p = _prefix(event)
        match event:
            case StageStarted(stage=s, reason=r):
                log.info("%s%s: started (%s)", p, s, r)
            case StageFinished(stage=s, seconds=t):
                log.info("%s%s: done in %.1f s", p, s, t)
            case StageSkipped(stage=s, reason=r):
                log.info("%s%s: skipped, %s", p, s, r)
            case StageFailed(stage=s, seconds=t, error=e):
                log.error("%s%s: failed after %.1f s: %s", p, s, t,
                          e.splitlines()[0] if e else "")
            case InstallStep(what=w) | ConfigurationStep(what=w):
                log.info("%s%s", p, w)
            case DiskStep(what=w):
                log.info("%sdisk: %s", p, w)
            case ExportStep(kind=k, name=n, seconds=t):
                log.debug("%s%s %s in %.2f s", p, k, n, t)
            case Progress(stage=s, what=w, done=d, total=n, unit=u):
                log.debug("%s%s: %s %d/%s %s", p, s, w, d, n if n is not None else "?", u)
            case BuildWarning():
                pass  # the warning's own log line is already out
            case _:
                self._packages(event)

    def _packages(self, event: Event) -> None:
        if isinstance(event, MetadataLoaded):
            how = "cached" if event.from_cache else "fetched"
            packages_log.info("repository %s: %d packages (%s, %.2f s)", event.repository,
                              event.packages, how, event.seconds)
        elif isinstance(event, Resolved):
            packages_log.info("resolved %d packages (%s) in %.2f s", event.packages,
                              human_size(event.download_bytes), event.seconds)
        elif isinstance(event, FetchStarted):
            self.total_bytes = event.download_bytes
            self.total_packages = event.download_packages
            self.done_bytes = self.done_packages = 0
            self.start = time.monotonic()
            packages_log.info("packages: %d in the lock, %d cached, %d to download (%s)",
                              event.packages, event.cached, event.download_packages,
                              human_size(event.download_bytes))
        elif isinstance(event, DownloadProgress):
            self.done_bytes += event.bytes
            self._update()
        elif isinstance(event, PackageFetched):
            if event.downloaded:
                self.done_packages += 1
                self._update(force=self.done_packages == self.total_packages)
        elif isinstance(event, FetchFinished):
            if self.tty and self.total_packages:
                self.stream.write("\n")  # keep the final bar
                self.stream.flush()
            rate = event.downloaded_bytes / event.seconds if event.seconds > 0 else 0.0
            packages_log.info("packages: downloaded %d (%s, %s/s), %d from the cache, %.1f s",
                              event.downloaded, human_size(event.downloaded_bytes),
                              human_size(rate), event.cached, event.seconds)
        else:
            log.debug("%s", event)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = self.done_bytes / elapsed
        left = max(self.total_bytes - self.done_bytes, 0)
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        share = self.done_bytes / self.total_bytes if self.total_bytes else 1.0
        bar = "#" * int(share * 24)
        return (f"[{bar:<24}] {self.done_packages}/{self.total_packages} packages "
                f"{human_size(self.done_bytes)}/{human_size(self.total_bytes)} "
                f"{human_size(rate)}/s ETA {eta}")

    def _update(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if force or now - self.last_line >= 0.1:
                self.stream.write("\r\033[K" + self.line())
                self.stream.flush()
                self.last_line = now
        elif force or now - self.last_line >= self.interval:
            packages_log.info("downloading: %s", self.line())
            self.last_line = now

"""Show fetch progress: a one-line bar on a terminal, plain log lines otherwise.

:class:`Progress` is an ordinary consumer of the :mod:`imagecomposer.foundation.events` stream, so
library callers can pass it (or their own callable) as ``events=``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from imagecomposer.foundation.events import (
    DownloadProgress,
    Event,
    FetchFinished,
    FetchStarted,
    MetadataLoaded,
    PackageFetched,
    Resolved,
)
from imagecomposer.foundation.units import human_size

__all__ = ["Progress"]

log = logging.getLogger("imagecomposer.pipeline.packages")


class Progress:
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

    def __call__(self, event: Event) -> None:
        if isinstance(event, MetadataLoaded):
            how = "cached" if event.from_cache else "fetched"
            log.info("repository %s: %d packages (%s, %.2f s)", event.repository,
                     event.packages, how, event.seconds)
        elif isinstance(event, Resolved):
            log.info("resolved %d packages (%s) in %.2f s", event.packages,
                     human_size(event.download_bytes), event.seconds)
        elif isinstance(event, FetchStarted):
            self.total_bytes = event.download_bytes
            self.total_packages = event.download_packages
            self.start = time.monotonic()
            log.info("packages: %d in the lock, %d cached, %d to download (%s)",
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
            log.info("packages: downloaded %d (%s, %s/s), %d from the cache, %.1f s",
                     event.downloaded, human_size(event.downloaded_bytes), human_size(rate),
                     event.cached, event.seconds)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = self.done_bytes / elapsed
        left = max(self.total_bytes - self.done_bytes, 0)
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        share = self.done_bytes / self.total_bytes if self.total_bytes else 1.0
        bar = "#" * int(share * 24)
        return (f"[{bar:<24}] {self.done_packages}/{self.total_packages} packages "
                f"{human_size(self.done_bytes)}/{human_size(self.total_bytes)} "
                f"{human_size(rate)}/s "
                f"ETA {eta}")

    def _update(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if force or now - self.last_line >= 0.1:
                self.stream.write("\r\033[K" + self.line())
                self.stream.flush()
                self.last_line = now
        elif force or now - self.last_line >= self.interval:
            log.info("downloading: %s", self.line())
            self.last_line = now

"""Machine-readable build events: one JSON object per line (``--log-format json``).

Another consumer of the :mod:`imagecomposer.foundation.events` stream, for CI systems.
:class:`JsonEvents` writes each event as one line; :class:`JsonLogHandler` writes the log
records that are not renderings of events (``"event": "log"``) to the same stream, so that
every line of the stream is one JSON object. The field set is stable (docs/cli.md):

* every object: ``event`` (the kind, below), ``time`` (UTC, ISO 8601 with milliseconds),
  ``build`` (image name, ``""`` outside a build) and ``stage`` (``""`` outside a stage);
* then the event's own fields, by kind: ``stage_started`` (``reason``), ``stage_finished``
  (``seconds``), ``stage_skipped`` (``reason``), ``stage_failed`` (``seconds``, ``error``),
  ``progress`` (``what``, ``done``, ``total``: null when unknown, ``unit``), ``warning``
  (``message``, ``logger``), ``result`` (``ok``, ``seconds``, ``output``, ``error``,
  ``exit_code``: the build's last object), ``metadata_loaded``, ``resolved``,
  ``fetch_started``, ``package_fetched``, ``fetch_finished``, ``install_step``,
  ``configuration_step``, ``disk_step``, ``export_step`` (the fields of the classes of the
  same names), and ``log`` (``level``, ``logger``, ``message``).

Paths are strings. Byte-level download progress (``DownloadProgress``, one per received
chunk) is not written: ``package_fetched`` and ``progress`` ("packages fetched") carry it.
A ``progress`` object of one step is written at most every :data:`PROGRESS_INTERVAL` seconds,
and always when the step starts or completes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, TextIO

import attrs

from imagecomposer.foundation.console import EVENT_RECORD
from imagecomposer.foundation.events import (
    BuildEnded,
    BuildWarning,
    DownloadProgress,
    Event,
    Progress,
)
from imagecomposer.foundation.redact import redact_urls

PROGRESS_INTERVAL = 0.5
NAMES: dict[type[Event], str] = {BuildWarning: "warning", BuildEnded: "result"}
FIRST = ("event", "time", "build", "stage")


def event_name(event: Event) -> str:
    """``StageStarted`` -> ``stage_started`` (``BuildWarning``: ``warning``,
    ``BuildEnded``: ``result``)."""
    name = NAMES.get(type(event))
    return name or re.sub(r"(?<!^)(?=[A-Z])", "_", type(event).__name__).lower()


def _now(created: float | None = None) -> str:
    stamp = datetime.fromtimestamp(created if created is not None else time.time(), UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, str):
        return redact_urls(value)
    return value


def event_object(event: Event, created: float | None = None) -> dict[str, Any]:
    """The JSON object of ``event``: ``event``, ``time``, ``build``, ``stage``, then its
    own fields (paths as strings, URL credentials removed)."""
    fields = attrs.asdict(event, recurse=False)
    out: dict[str, Any] = {"event": event_name(event), "time": _now(created),
                           "build": event.build, "stage": event.stage}
    out.update((k, _plain(v)) for k, v in fields.items() if k not in FIRST)
    return out


class JsonLines:
    """Whole lines of JSON on one stream, from any thread."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, ensure_ascii=False, default=str)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class JsonEvents:
    """An event sink writing one JSON object per event (see the module docstring)."""

    def __init__(self, out: JsonLines, *, interval: float = PROGRESS_INTERVAL) -> None:
        self.out = out
        self.interval = interval
        self._last: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if isinstance(event, DownloadProgress):
            return
        if isinstance(event, Progress) and not self._due(event):
            return
        self.out.write(event_object(event))

    def _due(self, event: Progress) -> bool:
        key = (event.build, event.stage, event.what)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            finished = event.total is not None and event.done >= event.total
            if last is not None and not finished and now - last < self.interval:
                return False
            self._last[key] = now
            return True


class JsonLogHandler(logging.Handler):
    """Log records as ``{"event": "log", ...}`` objects; records that render an event (or
    became one: a build's warnings) are left out, the event itself is written."""

    def __init__(self, out: JsonLines, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, EVENT_RECORD, False):
            return
        try:
            message = self.format(record)
            self.out.write({"event": "log", "time": _now(record.created), "build": "",
                            "stage": "", "level": record.levelname.lower(),
                            "logger": record.name, "message": message})
        except Exception:
            self.handleError(record)

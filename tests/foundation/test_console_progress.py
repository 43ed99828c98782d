"""The console's progress display and the JSON event stream, as consumers of the events.

On a terminal a long step is one line redrawn in place (``\\r``, erase to the end), and log
lines written meanwhile go above it; elsewhere it is a plain line once the step has run
for the interval. JSON: one object per event, a stable field set, progress throttled.
"""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from imagecomposer.foundation.console import STATUS, Console, TerminalHandler
from imagecomposer.foundation.events import (
    BuildEnded,
    BuildWarning,
    DownloadProgress,
    Progress,
    StageFinished,
    StageStarted,
)
from imagecomposer.foundation.jsonevents import JsonEvents, JsonLines, JsonLogHandler


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_line_redrawn_on_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "imagecomposer")
    out = Tty()
    console = Console(out)
    assert console.tty
    console(StageStarted("first run", build="b", stage="compose"))
    for done in (1, 50, 100):
        console(Progress("unpacking", done, 153, "packages", build="b", stage="compose"))
        time.sleep(0.11)
    text = out.getvalue()
    assert "\r\033[K" in text and "\n" not in text  # redrawn in place, never a new line
    assert "compose: unpacking [######" in text and "100/153 packages" in text
    assert STATUS.text.startswith("compose: unpacking")
    # a log line is written above the progress line, which comes back under it
    handler = TerminalHandler(out)
    record = logging.LogRecord("imagecomposer", logging.WARNING, __file__, 1, "careful",
                               None, None)
    before = len(out.getvalue())
    handler.emit(record)
    written = out.getvalue()[before:]
    assert written.startswith("\r\033[K") and "careful\n" in written
    assert written.endswith(STATUS.text)
    console(StageFinished(1.0, build="b", stage="compose"))
    assert STATUS.text == "" and out.getvalue().endswith("\r\033[K")
    assert "compose: done in 1.0 s" in caplog.text


def test_progress_without_a_terminal_is_a_plain_line_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "imagecomposer")
    out = io.StringIO()
    console = Console(out, interval=0.2)
    assert not console.tty
    console(Progress("converting to qcow2", 1 << 20, 8 << 20, "bytes", stage="finalize"))
    assert "converting" not in caplog.text  # a short step says nothing
    time.sleep(0.25)
    console(Progress("converting to qcow2", 4 << 20, 8 << 20, "bytes", stage="finalize"))
    console(Progress("converting to qcow2", 5 << 20, 8 << 20, "bytes", stage="finalize"))
    lines = [r.getMessage() for r in caplog.records if "converting" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("finalize: converting to qcow2 [##########          ] "
                               "4.0 MiB/8.0 MiB (")
    assert out.getvalue() == ""  # nothing drawn


def test_download_bytes_do_not_interleave_with_package_progress() -> None:
    """While the download bar runs, the per-package Progress of the same work is not drawn
    over it."""
    from imagecomposer.foundation.events import FetchFinished, FetchStarted

    out = Tty()
    console = Console(out)
    console(FetchStarted(2, 0, 2, 2000, stage="packages"))
    console(DownloadProgress("a", 1000, stage="packages"))
    console(Progress("packages fetched", 1, 2, "packages", stage="packages"))
    assert "packages fetched" not in out.getvalue() and "downloading: [" in out.getvalue()
    console(FetchFinished(2, 2000, 0, 0.1, stage="packages"))
    assert STATUS.text == ""


def test_json_events_one_object_per_event_with_a_stable_field_set() -> None:
    out = io.StringIO()
    sink = JsonEvents(JsonLines(out), interval=10.0)
    sink(StageStarted("first run", build="web", stage="packages"))
    for done in range(1, 6):  # throttled: the first and the completing one
        sink(Progress("packages fetched", done, 5, "packages", build="web", stage="packages"))
    sink(DownloadProgress("libc6", 4096, build="web", stage="packages"))  # not written
    sink(BuildWarning("careful", "imagecomposer.x", build="web", stage="packages"))
    sink(BuildEnded(True, 1.5, build="web"))
    found = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["event"] for o in found] == ["stage_started", "progress", "progress", "warning",
                                           "result"]
    assert [o["done"] for o in found if o["event"] == "progress"] == [1, 5]
    assert found[0] == {"event": "stage_started", "time": found[0]["time"], "build": "web",
                        "stage": "packages", "reason": "first run"}
    assert found[3]["message"] == "careful" and found[3]["logger"] == "imagecomposer.x"
    assert found[4] == {"event": "result", "time": found[4]["time"], "build": "web",
                        "stage": "", "ok": True, "seconds": 1.5, "output": None, "error": "",
                        "exit_code": 0}


def test_json_log_records_skip_the_lines_that_render_events() -> None:
    out = io.StringIO()
    handler = JsonLogHandler(JsonLines(out))
    logger = logging.getLogger("imagecomposer.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("see https://user:secret@mirror.example/debian")
        logger.info("packages: done in 1.0 s", extra={"imagecomposer_event": True})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    found = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(found) == 1
    assert found[0]["event"] == "log" and found[0]["level"] == "warning"
    assert found[0]["logger"] == "imagecomposer.test.json"

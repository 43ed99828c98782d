"""build_many: several specs in processes of their own, at most max_concurrent at once; a
failure of one does not stop the others; every event reaches the caller's callback.

Fast: stand-in stages (module-level classes, so the build processes can unpickle them)
record when each build ran, in which process, and emit one event of their own.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import attrs
import pytest

from imagecomposer import build_many
from imagecomposer.cli.main import main
from imagecomposer.config.model import Config, Core
from imagecomposer.foundation.errors import PackageNotFound
from imagecomposer.foundation.events import (
    ConfigurationStep,
    Event,
    StageFinished,
    StageStarted,
)
from imagecomposer.pipeline.context import BuildContext
from imagecomposer.spec.model import STAGES, Base, Image, Output, Spec

log = logging.getLogger("imagecomposer.test")


@attrs.frozen
class Standin:
    """Records ``<marks>/<build>.start|end`` and the pid; ``alpha`` waits in packages until
    ``gamma`` has started; ``broken`` fails in packages."""

    name: str
    consumes: tuple[str, ...] = ()

    def inputs(self, ctx: BuildContext, upstream: Mapping[str, str]) -> dict[str, object]:
        return {"build": ctx.name, "upstream": dict(upstream)}

    def outputs_present(self, ctx: BuildContext) -> bool:
        return False

    def run(self, ctx: BuildContext, inputs: object) -> None:
        marks = ctx.config.core.work_dir / "marks"
        marks.mkdir(exist_ok=True)
        build = ctx.name
        if self.name == "validate":
            (marks / f"{build}.start").write_text(f"{time.time()} {os.getpid()}")
        elif self.name == "packages":
            log.info("hello from %s", build)
            if build == "broken":
                (marks / f"{build}.end").write_text(str(time.time()))
                raise PackageNotFound("Package not found: nothing-of-that-name")
            if build == "alpha":
                deadline = time.monotonic() + 60
                while not (marks / "gamma.start").exists():
                    assert time.monotonic() < deadline, "gamma never started"
                    time.sleep(0.05)
        elif self.name == "configuration":
            ctx.emit(ConfigurationStep(f"configured {build}"))
        elif self.name == "finalize":
            (marks / f"{build}.end").write_text(str(time.time()))


STANDINS = tuple(Standin(n) for n in STAGES)


def spec(name: str, tmp_path: Path) -> Spec:
    return Spec(image=Image(name, Base("debian", "12")),
                output=Output(directory=tmp_path / "out" / name))


def test_builds_run_concurrently_in_their_own_processes_and_one_failure_stops_none(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"))
    events: list[Event] = []
    caplog.set_level(logging.INFO, logger="imagecomposer")
    names = ["alpha", "broken", "gamma"]
    results = build_many([spec(n, tmp_path) for n in names], config=config,
                         events=events.append, max_concurrent=2, stages=STANDINS)

    assert [(r.spec, r.ok, r.exit_code) for r in results] == [
        ("alpha", True, 0), ("broken", False, 1), ("gamma", True, 0)]
    broken = results[1]
    assert broken.error is not None and re.fullmatch(
        r"packages failed after [0-9.]+ s: Package not found: nothing-of-that-name",
        broken.error), broken.error
    assert broken.error_type == "PackageNotFound" and broken.report is None
    for result in (results[0], results[2]):
        assert result.report is not None
        assert [o.status for o in result.report.run.outcomes] == ["ran"] * 6

    # each build in a process of its own; never more than two at once
    marks = tmp_path / "work" / "marks"
    pids = {n: int((marks / f"{n}.start").read_text().split()[1]) for n in names}
    assert len(set(pids.values())) == 3 and os.getpid() not in pids.values()
    spans = [(float((marks / f"{n}.start").read_text().split()[0]),
              float((marks / f"{n}.end").read_text())) for n in names]
    running = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert running == 2

    # every event of every build reached the callback, in order per build
    for name in ("alpha", "gamma"):
        mine = [e for e in events if e.build == name]
        assert [e.stage for e in mine if isinstance(e, StageStarted)] == list(STAGES)
        assert [e.stage for e in mine if isinstance(e, StageFinished)] == list(STAGES)
        step = next(e for e in mine if isinstance(e, ConfigurationStep))
        assert step == ConfigurationStep(f"configured {name}", build=name,
                                         stage="configuration")
        assert mine.index(step) < mine.index(StageFinished(
            next(e.seconds for e in mine if isinstance(e, StageFinished)
                 and e.stage == "configuration"), build=name, stage="configuration"))
    assert [e.stage for e in events if e.build == "broken" and isinstance(e, StageStarted)] \
        == ["validate", "packages"]
    # their log lines too, with the image name in front
    assert "[alpha] hello from alpha" in caplog.text
    # the failure is the caller's to print (once): the build's log lines do not repeat it
    assert "nothing-of-that-name" not in caplog.text


def test_cancel_interrupts_the_running_build_and_starts_no_other(tmp_path: Path) -> None:
    """``cancel`` set from another thread: the running build unwinds as after Ctrl-C (a
    BuildInterrupted result naming its stage), the pending one never starts."""
    config = Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"))
    marks = tmp_path / "work" / "marks"
    cancel = threading.Event()

    def cancel_when_alpha_waits() -> None:  # alpha waits in packages for gamma, never started
        deadline = time.monotonic() + 60
        while not (marks / "alpha.start").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=cancel_when_alpha_waits, daemon=True).start()
    started = time.monotonic()
    results = build_many([spec(n, tmp_path) for n in ("alpha", "gamma")], config=config,
                         max_concurrent=1, stages=STANDINS, cancel=cancel)
    assert time.monotonic() - started < 30  # not alpha's 60 s wait
    assert [(r.spec, r.ok, r.error_type, r.exit_code) for r in results] == [
        ("alpha", False, "BuildInterrupted", 130), ("gamma", False, "BuildInterrupted", 130)]
    assert results[0].error is not None and results[0].error.startswith("packages ")
    assert results[1].error == "Interrupted: cancelled before it started"
    assert not (marks / "gamma.start").exists() and not (marks / "alpha.end").exists()


def test_cli_builds_several_specs_through_build_many(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(b"")
    config = tmp_path / "imagecomposer.yml"
    config.write_text(
        f"core: {{cache_dir: '{tmp_path}/cache', work_dir: '{tmp_path}/work', "
        "max_concurrent_builds: 2}\n"
        f"providers:\n  debian: {{kind: deb, mirror: 'http://127.0.0.1:9/debian', "
        f"keyring: '{keyring}'}}\n")
    specs = []
    for name, os_name in (("one", "debian"), ("two", "debian"), ("typo", "debain")):
        specs.append(tmp_path / f"{name}.yml")
        specs[-1].write_text(f"image: {{name: {name}, base: {{os: {os_name}, version: '12'}}}}\n")

    code = main(["--config", str(config), "build", "--stage", "validate", *map(str, specs)])

    assert code == 1
    out, err = capsys.readouterr()
    assert f"{specs[0]}:\n  stage" in out and f"{specs[1]}:\n  stage" in out
    assert re.search(r"^  validate +ran +[0-9.]+ +first run$", out, re.M)
    assert err.count("Validation error") == 1 and "did you mean 'debian'" in err  # once
    assert re.search(rf"ERROR: {re.escape(str(specs[2]))}: validate failed after [0-9.]+ s: "
                     "Validation error", err), err
    assert f"INFO: {specs[0]}: ok" in err and f"INFO: {specs[2]}: failed (exit code 1)" in err
    assert "Traceback" not in err
    assert "[one] validate: started (first run)" in err  # the builds' own log lines

    # one output directory for several specs: refused
    assert main(["--config", str(config), "build", "-o", str(tmp_path / "o"),
                 *map(str, specs[:2])]) == 2
    assert "output.directory" in capsys.readouterr().err

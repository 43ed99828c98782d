"""The engine's skip/rerun/--stage/--skip-stage/--timeout behaviour, with test stages."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

import attrs
import pytest

from imagecomposer.foundation.errors import BuildTimeout, UsageError
from imagecomposer.foundation.events import Event, StageSkipped, StageStarted
from imagecomposer.pipeline.engine import Engine, Hook, RunOptions, RunView, parse_duration
from imagecomposer.pipeline.workspace import Workspace


@attrs.define
class Ctx:
    values: dict[str, str]
    ran: list[str] = attrs.Factory(list)
    out: Path | None = None


@attrs.define
class FileStage:
    """Writes ``<name>.out`` holding its input; its inputs are the ctx's value named ``key``
    and the fingerprints of the stages it consumes."""

    name: str
    key: str
    consumes: tuple[str, ...] = ()
    sleep: float = 0.0
    fail: bool = False

    def inputs(self, ctx: Ctx, upstream: Mapping[str, str]) -> dict[str, object]:
        return {self.key: ctx.values[self.key], "upstream": dict(upstream)}

    def outputs_present(self, ctx: Ctx) -> bool:
        assert ctx.out is not None
        return (ctx.out / f"{self.name}.out").exists()

    def run(self, ctx: Ctx, inputs: dict[str, object]) -> None:
        assert inputs[self.key] == ctx.values[self.key]
        ctx.ran.append(self.name)
        if self.sleep:
            time.sleep(self.sleep)
        if self.fail:
            raise RuntimeError(f"{self.name} broke")
        assert ctx.out is not None
        (ctx.out / f"{self.name}.out").write_text(ctx.values[self.key])


Made = tuple[Engine[Ctx], Workspace, Ctx, list[Event]]


def make(tmp_path: Path, **overrides: FileStage) -> Made:
    events: list[Event] = []
    # compose consumes what packages made; packages does not consume validate's result.
    stages = [overrides.get(n, FileStage(n, k, c)) for n, k, c in
              [("validate", "spec", ()), ("packages", "request", ()),
               ("compose", "lock", ("packages",))]]
    ws = Workspace(tmp_path / "ws")
    ctx = Ctx({"spec": "s1", "request": "r1", "lock": "l1"}, out=ws.root)
    return Engine(stages, events=events.append), ws, ctx, events


def test_first_run_runs_everything_then_skips_up_to_date(tmp_path: Path) -> None:
    pipe, ws, ctx, events = make(tmp_path)
    report = pipe.run(ctx, ws)
    assert ctx.ran == ["validate", "packages", "compose"]
    assert [o.reason for o in report.outcomes] == ["first run"] * 3
    ctx.ran.clear()
    report = pipe.run(ctx, ws)
    assert ctx.ran == []
    assert {o.reason for o in report.outcomes} == {"up to date"}
    assert StageSkipped("up to date", build="build", stage="packages") in events


def test_changed_input_reruns_that_stage_and_everything_after(tmp_path: Path) -> None:
    pipe, ws, ctx, _ = make(tmp_path)
    pipe.run(ctx, ws)
    ctx.ran.clear()
    ctx.values["request"] = "r2"
    report = pipe.run(ctx, ws)
    assert ctx.ran == ["packages", "compose"]
    reasons = {o.stage: o.reason for o in report.outcomes}
    assert reasons == {"validate": "up to date", "packages": "input 'request' changed",
                       "compose": "the output of packages changed"}


def test_missing_outputs_rerun(tmp_path: Path) -> None:
    pipe, ws, ctx, _ = make(tmp_path)
    pipe.run(ctx, ws)
    (ws.root / "compose.out").unlink()
    ctx.ran.clear()
    report = pipe.run(ctx, ws)
    assert ctx.ran == ["compose"]
    assert report.outcomes[-1].reason == "outputs missing"


def test_stage_until_and_skip(tmp_path: Path) -> None:
    pipe, ws, ctx, _ = make(tmp_path)
    report = pipe.run(ctx, ws, RunOptions(until="packages"))
    assert ctx.ran == ["validate", "packages"]
    assert report.outcomes[-1].reason == "after --stage packages"
    ctx.ran.clear()
    pipe.run(ctx, ws, RunOptions(skip=("validate",), force=True))
    assert ctx.ran == ["packages", "compose"]


def test_selected_stages_and_force(tmp_path: Path) -> None:
    pipe, ws, ctx, events = make(tmp_path)
    pipe.run(ctx, ws, RunOptions(selected=("validate", "compose")))
    assert ctx.ran == ["validate", "compose"]
    ctx.ran.clear()
    pipe.run(ctx, ws, RunOptions(force=True))
    assert ctx.ran == ["validate", "packages", "compose"]
    assert StageStarted("forced by --no-cache", build="build", stage="compose") in events


def test_unknown_stage_is_a_usage_error(tmp_path: Path) -> None:
    pipe, ws, ctx, _ = make(tmp_path)
    with pytest.raises(UsageError, match="unknown stage 'packagez'"):
        pipe.run(ctx, ws, RunOptions(until="packagez"))


def test_failure_records_nothing_for_the_failed_stage(tmp_path: Path) -> None:
    broken = FileStage("compose", "lock", ("packages",), fail=True)
    pipe, ws, ctx, _ = make(tmp_path, compose=broken)
    with pytest.raises(RuntimeError, match="compose broke"):
        pipe.run(ctx, ws)
    assert set(ws.records()) == {"validate", "packages"}
    state = json.loads((ws.root / "state.json").read_text())
    assert "compose" not in state["stages"]


def test_timeout_aborts_cleanly_and_leaves_no_record(tmp_path: Path) -> None:
    pipe, ws, ctx, _ = make(tmp_path, packages=FileStage("packages", "request", sleep=5))
    t0 = time.monotonic()
    with pytest.raises(BuildTimeout, match=r"timed out after 0\.3s"):
        pipe.run(ctx, ws, RunOptions(timeout=0.3))
    assert time.monotonic() - t0 < 2
    assert set(ws.records()) == {"validate"}
    assert not (ws.root / "packages.out").exists()


def test_rerun_after_interrupted_stage_runs_it_again(tmp_path: Path) -> None:
    pipe, ws, ctx, _ = make(tmp_path)
    pipe.run(ctx, ws)
    slow, ws2, ctx2, _ = make(tmp_path, packages=FileStage("packages", "request", sleep=5))
    ctx2.values["request"] = "r2"
    with pytest.raises(BuildTimeout):
        slow.run(ctx2, ws2, RunOptions(timeout=0.2))
    assert "packages" not in ws2.records()
    ctx.ran.clear()
    ctx.values["request"] = "r2"
    pipe.run(ctx, ws)
    assert ctx.ran == ["packages", "compose"]


def test_timing_table_lists_every_stage(tmp_path: Path) -> None:
    pipe, ws, ctx, _ = make(tmp_path)
    table = pipe.run(ctx, ws).table()
    lines = table.splitlines()
    assert lines[0].split() == ["stage", "status", "seconds", "reason"]
    assert [line.split()[0] for line in lines[1:]] == ["validate", "packages", "compose", "total"]


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("1h30m", 5400), ("90s", 90),
                                              ("45", 45), ("1.5m", 90)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "30x", "1m30", "-5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)


def test_a_change_reruns_only_the_stages_that_consume_it(tmp_path: Path) -> None:
    pipe, ws, ctx, _ = make(tmp_path)
    pipe.run(ctx, ws)
    ctx.ran.clear()
    ctx.values["spec"] = "s2"
    report = pipe.run(ctx, ws)
    assert ctx.ran == ["validate"]
    assert [o.reason for o in report.outcomes] == ["input 'spec' changed", "up to date",
                                                   "up to date"]


# --- typed inputs and hooks ---------------------------------------------------------------


@attrs.frozen
class Request:
    read_only_root: bool = False
    names: tuple[str, ...] = ()


@attrs.frozen
class TypedStage:
    """A stage whose inputs are one attrs value; the engine names the field that changed."""

    name: str = "packages"
    consumes: tuple[str, ...] = ()
    upstream_field: bool = True

    def inputs(self, ctx: Ctx, upstream: Mapping[str, str]) -> dict[str, object]:
        value: dict[str, object] = {"request": ctx.values["request"]}
        if self.upstream_field:
            value["upstream"] = dict(upstream)
        return value

    def outputs_present(self, ctx: Ctx) -> bool:
        return True

    def run(self, ctx: Ctx, inputs: dict[str, object]) -> None:
        ctx.ran.append(self.name)


def test_a_changed_field_of_typed_inputs_is_named(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ctx = Ctx({"request": Request()})
    engine: Engine[Ctx] = Engine([TypedStage()])
    engine.run(ctx, ws)
    ctx.values["request"] = Request(read_only_root=True)
    report = engine.run(ctx, ws)
    assert report.outcomes[0].reason == "input 'request.read_only_root' changed"
    ctx.values["request"] = Request(read_only_root=False, names=("a",))
    report = engine.run(ctx, ws)
    assert report.outcomes[0].reason == \
        "input 'request.names' changed (and 1 more)"
    state = json.loads((ws.root / "state.json").read_text())["stages"]["packages"]
    assert set(state["inputs"]) == {"request.read_only_root", "request.names", "upstream"}


def test_inputs_must_hold_the_fingerprints_of_consumed_stages(tmp_path: Path) -> None:
    engine: Engine[Ctx] = Engine([TypedStage("packages"), TypedStage(
        "compose", consumes=("packages",), upstream_field=False)])
    with pytest.raises(TypeError,
                       match=r"must hold the fingerprints .* \(missing: \['packages'\]\)"):
        engine.run(Ctx({"request": "r"}), Workspace(tmp_path / "ws"))


def test_a_hook_ends_the_run_and_sees_the_inputs_of_the_stages_to_come(
        tmp_path: Path) -> None:
    pipe, ws, ctx, events = make(tmp_path)
    seen: list[str] = []

    def hook(ctx: Ctx, view: RunView[Ctx]) -> str | None:
        assert view.stages_after("packages") == ("compose",)
        compose = view.inputs("compose")
        assert compose.value == {"lock": "l1", "upstream": {"packages": view.inputs(
            "packages").key.digest}}
        seen.append(compose.key.digest)
        return "restored elsewhere"

    report = pipe.run(ctx, ws, hooks=[Hook("packages", hook)])
    assert ctx.ran == ["validate", "packages"] and len(seen) == 1
    assert [(o.stage, o.status, o.reason) for o in report.outcomes][-1] == \
        ("compose", "skipped", "restored elsewhere")
    # the key the hook saw is the one the stage has when it runs
    ctx.ran.clear()
    pipe.run(ctx, ws)
    assert ctx.ran == ["compose"]
    assert ws.records()["compose"].fingerprint == seen[0]
    # a flag the user gave keeps its own reason
    report = pipe.run(ctx, ws, RunOptions(skip=("compose",)), hooks=[Hook("packages", hook)])
    assert report.outcomes[-1].reason == "--skip-stage"
    assert StageSkipped("restored elsewhere", build="build", stage="compose") in events

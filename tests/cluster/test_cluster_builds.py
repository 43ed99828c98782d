"""Builds on a cluster of real components started here (issue 17): redis-server on
127.0.0.1, three worker processes with their own work and cache directories, one shared
store directory, a signed deb archive served on 127.0.0.1.

Six small specs are submitted with ``imagecomposer.build_many(..., cluster=URL)``; the
worker building ``slow`` is killed with SIGKILL in the middle of it. The real validate,
packages, sign and finalize stages run; compose and configuration are stand-ins
(:mod:`tests.cluster.standins`: a real tree needs root and the Debian archive).

Checked once on that run: every build succeeds, ``slow`` on another worker than the killed
one, with exactly one published output and no staging leftovers; every package was
downloaded from the archive once for the whole cluster; each output is byte-identical to a
local build of the same spec; every stage's events reached the caller (``slow``'s twice);
the killed worker, started again, removes what it left.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from pathlib import Path

import attrs
import pytest

import imagecomposer
from imagecomposer.config import load_config
from imagecomposer.foundation.events import Event, StageFinished, StageStarted
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.pipeline.many import BuildResult
from imagecomposer.spec.model import STAGES, Spec
from tests.cluster.conftest import Archive, Worker, config_file
from tests.cluster.standins import STAGES as STANDIN_STAGES

SPECS = {"alpha": ["tool-a"], "beta": ["tool-b"], "gamma": ["tool-a", "tool-b"],
         "delta": ["tool-c"], "epsilon": ["tool-a", "tool-c"], "slow": ["tool-b"]}


def write_specs(directory: Path) -> list[Path]:
    (directory / "files").mkdir(parents=True)
    (directory / "files" / "motd").write_text("built on a cluster\n")
    paths = []
    for name, packages in SPECS.items():
        path = directory / f"{name}.yml"
        path.write_text(
            f"image: {{name: {name}, base: {{os: debian, version: '12'}}}}\n"
            f"customizations:\n  hostname: {name}\n"
            f"  packages: {{install: [{', '.join(packages)}]}}\n"
            "  files: [{source: ./files/motd, destination: /etc/motd}]\n"
            "output: {formats: [raw], sbom: []}\n")
        paths.append(path)
    return paths


@attrs.frozen
class Run:
    results: list[BuildResult]
    events: list[Event]
    killed: Worker
    workers: list[Worker]
    specs: list[Path]
    shared: Path
    deb_requests: Counter[str]
    seconds: float
    leftover_before_restart: list[Path]


@pytest.fixture(scope="module")
def run(workers: list[Worker], archive: Archive, redis_url: str,
        tmp_path_factory: pytest.TempPathFactory) -> Run:
    specs = write_specs(tmp_path_factory.mktemp("specs"))
    events: list[Event] = []
    results: list[BuildResult] = []
    failure: list[BaseException] = []

    def submit() -> None:
        try:
            results.extend(imagecomposer.build_many(specs, cluster=redis_url,
                                                    events=events.append, timeout=240))
        except BaseException as exc:
            failure.append(exc)

    start = time.monotonic()
    thread = threading.Thread(target=submit)
    thread.start()
    deadline = time.monotonic() + 120
    killed = None
    while killed is None:
        assert time.monotonic() < deadline and thread.is_alive(), \
            f"slow never started: {failure}"
        killed = next((w for w in workers if (w.work / "building" / "slow").exists()), None)
        time.sleep(0.05)
    killed.kill()
    thread.join(timeout=240)
    assert not thread.is_alive() and not failure, failure
    seconds = time.monotonic() - start
    leftovers = sorted((killed.work / "cluster").iterdir())
    killed.start()  # the host comes back: what the killed run left goes
    deadline = time.monotonic() + 60
    while any((killed.work / "cluster").iterdir()):
        assert time.monotonic() < deadline, "the restarted worker kept its leftovers"
        time.sleep(0.1)
    requests: Counter[str] = Counter()
    for (path, status), n in archive.server.requests.items():
        if path.endswith(".deb") and status == 200:
            requests[path] += n
    shared = Path(load_config(workers[0].config).config.storage.shared_store or "")
    return Run(results, events, killed, workers, specs, shared, requests, seconds, leftovers)


def test_every_build_succeeds_the_killed_one_on_another_worker(run: Run) -> None:
    print(f"six builds on three workers, one killed: {run.seconds:.1f} s")
    assert [(Path(r.spec).stem, r.ok) for r in run.results] == [(n, True) for n in SPECS], \
        [r.error for r in run.results]
    slow = run.results[-1]
    assert slow.worker is not None and slow.worker != run.killed.name
    assert len({r.worker for r in run.results}) >= 2  # spread over the workers
    for result in run.results:
        assert result.output is not None and result.output.parent.name == \
            Path(result.spec).stem
        record = (result.output / "cluster.json").read_text()
        assert f'"worker": "{result.worker}"' in record


def test_no_partial_output_and_the_dead_workers_state_is_removed(run: Run) -> None:
    # the killed worker had the build's task directory; nothing of it was published
    assert run.leftover_before_restart, "the kill left no task directory: not mid-build?"
    assert [p.name for p in (run.shared / "outputs" / "slow").iterdir()] == \
        [run.results[-1].output.name if run.results[-1].output else ""]
    assert not [p for p in (run.shared / "outputs").rglob(".tmp*")]
    assert not list((run.shared / ".tmp").iterdir())


def test_each_package_is_downloaded_once_for_the_whole_cluster(run: Run) -> None:
    assert run.deb_requests, "no package was downloaded"
    assert {path: n for path, n in run.deb_requests.items() if n != 1} == {}
    published = {p.name.split(".")[0] for p in (run.shared / "packages").rglob("*.deb")}
    assert len(published) == len(run.deb_requests)
    for path in (run.shared / "packages").rglob("*.deb"):  # named by their content
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name.split(".")[0]


def test_outputs_are_byte_identical_to_local_builds(run: Run, archive: Archive,
                                                     tmp_path: Path) -> None:
    host = tmp_path / "local"
    host.mkdir()
    config = load_config(config_file(host / "config.yml", host, archive, None)).config
    pipeline = ImagePipeline(config, stages=STANDIN_STAGES, progress_bar=False)
    for path, result in zip(run.specs, run.results, strict=True):
        if path.stem == "slow":
            continue  # the same code path; skipping saves its wait
        out = tmp_path / "out" / path.stem
        pipeline.build(Spec.load(path), BuildOptions(output_dir=out))
        local = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert result.output is not None
        remote = {p.relative_to(result.output): p.read_bytes()
                  for p in result.output.rglob("*") if p.is_file()}
        assert remote.pop(Path("cluster.json"))
        assert local.keys() == remote.keys()
        assert [k for k in local if local[k] != remote[k]] == [], path.stem


def test_every_stage_event_reaches_the_caller(run: Run) -> None:
    for name in SPECS:
        started = [e.stage for e in run.events
                   if isinstance(e, StageStarted) and e.build == name]
        finished = [e.stage for e in run.events
                    if isinstance(e, StageFinished) and e.build == name]
        if name == "slow":  # from the start again on the second worker
            assert started.count("validate") == 2 and finished[-6:] == list(STAGES)
        else:
            assert started == list(STAGES) and finished == list(STAGES)

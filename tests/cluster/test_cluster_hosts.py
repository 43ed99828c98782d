"""What one build host does for another, with real components started here: a redis-server
of this module's own (append-only, so that it can be restarted), two worker processes with
their own work and cache directories, one shared store, the signed test archive.

* An image built on one worker is an image cache hit on the other (through the shared
  store), with the same bytes, its signing key included in the inputs. Its signed
  provenance names the worker that built it (``runDetails.builder.id``); everything else is
  byte-identical to a local build, and the provenance's ``buildDefinition`` too.
* A worker whose disk is full (a stand-in stage raising ``OSError(ENOSPC)`` on w1 only)
  fails the build there with a clear warning, and the build goes to the other worker and
  succeeds (w1 alone first: the build waits for a worker that is not excluded). w1 is out
  of rotation meanwhile (it takes no build, the queue keeps them) until its free space (a
  stand-in, :mod:`tests.cluster.workerproc`) is back, then it builds again.
* The submitter (``imagecomposer build --cluster``) interrupted with Ctrl-C (SIGINT): its
  running build is interrupted on its worker (cleaned up, nothing published), its queued
  build never runs, and the worker takes the next build.
* redis-server SIGKILLed and started again (same port, same append-only file) while two
  builds wait in the queue: neither is lost, both complete, the submitter waits it out.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import imagecomposer
from imagecomposer.cluster import wire
from imagecomposer.cluster.app import redis_client
from imagecomposer.cluster.worker import (
    MAX_FULL,
    NO_SPACE,
    WorkerSettings,
    host_arch,
    no_space,
    rerouted,
)
from imagecomposer.config import load_config
from imagecomposer.export.provenance import BUILDER_ID, SUFFIX, builder_id, read_statements
from imagecomposer.foundation.events import (
    BuildWarning,
    Event,
    StageFailed,
    StageSkipped,
    StageStarted,
)
from imagecomposer.pipeline.build import SHARED_HIT, ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.pipeline.many import BuildResult
from imagecomposer.spec.model import Spec
from tests.cluster.conftest import DETACHED, ROOT, Archive, RedisServer, Worker, config_file
from tests.cluster.standins import STAGES as STANDIN_STAGES

FULL = "full"  # images named so fail for a full disk on the worker w1 (tests.cluster.standins)


@attrs.frozen
class Cluster:
    redis: RedisServer
    workers: list[Worker]
    shared: Path
    specs: Path
    archive: Archive
    key: ed25519.Ed25519PrivateKey  # signs the specs' outputs; each worker has it as a secret

    def only(self, *names: str) -> None:
        """Run exactly the workers named (a stopped worker finishes its build first)."""
        for worker in self.workers:
            if worker.name not in names:
                worker.stop()
        for worker in self.workers:
            if worker.name in names and not worker.running:
                worker.start()

    def spec(self, name: str, *, signed: bool = False) -> Path:
        path = self.specs / f"{name}.yml"
        sign = ", sign: {key: ./keys/sign.pem}" if signed else ""
        path.write_text(
            f"image: {{name: {name}, base: {{os: debian, version: '12'}}}}\n"
            f"customizations:\n  hostname: {name}\n  packages: {{install: [tool-a]}}\n"
            f"output: {{formats: [raw], sbom: []{sign}}}\n")
        return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, archive: Archive) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("hosts")
    redis = RedisServer(root / "redis", appendonly=True)
    redis.data.mkdir()
    redis.start()
    shared = root / "shared"
    shared.mkdir()
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    for keys in (root / "specs" / "keys", root / "secrets" / "keys"):
        keys.mkdir(parents=True)
        (keys / "sign.pem").write_bytes(pem)
    workers = []
    for n in range(2):
        host = root / f"host{n}"
        host.mkdir()
        workers.append(Worker(f"w{n}", host, config_file(host / "config.yml", host, archive,
                                                         shared), redis.url,
                              secrets=root / "secrets",
                              env={"IMAGECOMPOSER_STANDIN_ENOSPC": FULL,
                                   "IMAGECOMPOSER_STANDIN_FREE": str(host / "free")}
                              if n == 1 else {}))
    try:
        yield Cluster(redis, workers, shared, root / "specs", archive, key)
    finally:
        for worker in workers:
            worker.stop()
        redis.stop()


@attrs.define
class Submission:
    """``build_many(cluster=)`` in a thread: its events, then its results."""

    events: list[Event] = attrs.field(factory=list)
    results: list[BuildResult] = attrs.field(factory=list)
    failure: list[BaseException] = attrs.field(factory=list)
    thread: threading.Thread | None = None

    def start(self, specs: list[Path], url: str) -> Submission:
        def submit() -> None:
            try:
                self.results.extend(imagecomposer.build_many(
                    specs, cluster=url, events=self.events.append, timeout=120))
            except BaseException as exc:
                self.failure.append(exc)

        self.thread = threading.Thread(target=submit)
        self.thread.start()
        return self

    def wait(self) -> list[BuildResult]:
        assert self.thread is not None
        self.thread.join(timeout=150)
        assert not self.thread.is_alive() and not self.failure, self.failure
        return self.results


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def builder_and_definition(output: Path, key: ed25519.Ed25519PrivateKey
                           ) -> tuple[str, dict[str, object]]:
    """The signed provenance's builder id, and its build definition and subjects."""
    [path] = output.glob(f"*{SUFFIX}")
    slsa = read_statements(path, key.public_key())[0]
    predicate = slsa["predicate"]
    return predicate["runDetails"]["builder"]["id"], {
        "buildDefinition": predicate["buildDefinition"], "subject": slsa["subject"],
        "builder": {k: v for k, v in predicate["runDetails"]["builder"].items() if k != "id"}}


def test_an_image_built_on_one_worker_is_a_cache_hit_on_the_other(cluster: Cluster) -> None:
    started = time.monotonic()
    cluster.only("w0", "w1")
    # signed: the key is unpacked at another path for every task (the same input)
    spec = cluster.spec("same", signed=True)
    first = Submission().start([spec], cluster.redis.url)
    [built] = first.wait()
    assert built.ok, built.error
    assert [e.reason for e in first.events if isinstance(e, StageSkipped)] == []
    # the worker that built it leaves: the same spec goes to the other one
    other = next(w for w in cluster.workers if w.name != built.worker)
    cluster.only(other.name)
    second = Submission().start([spec], cluster.redis.url)
    [again] = second.wait()
    print(f"built, then a shared-store hit on another worker: "
          f"{time.monotonic() - started:.1f} s")
    assert again.ok and again.worker == other.name != built.worker, again.error
    skipped = {e.stage: e.reason for e in second.events if isinstance(e, StageSkipped)}
    assert skipped == {"compose": SHARED_HIT, "configuration": SHARED_HIT,
                       "sign": SHARED_HIT, "finalize": SHARED_HIT}
    assert "configuration" not in {e.stage for e in second.events
                                   if isinstance(e, StageStarted)}
    # the same bytes: the outputs published by both, and the other worker's cache entry
    assert again.output == built.output and built.output is not None
    published = files(built.output)
    published.pop("cluster.json")
    [entry] = (other.host / "cache").rglob("entry.json")
    assert files(entry.parent / "files") == published


def test_a_worker_with_a_full_disk_hands_the_build_to_another(cluster: Cluster) -> None:
    started = time.monotonic()
    w0, w1 = cluster.workers
    free = w1.host / "free"  # w1's free space (tests.cluster.workerproc)
    free.write_text("0")  # its disk is full: the stand-in stage fails FULL builds with ENOSPC
    cluster.only("w1")  # the only worker
    submission = Submission().start([cluster.spec(FULL)], cluster.redis.url)
    deadline = time.monotonic() + 60
    while not any(isinstance(e, BuildWarning) for e in submission.events):
        assert time.monotonic() < deadline and submission.thread is not None \
            and submission.thread.is_alive(), (submission.failure, submission.results)
        time.sleep(0.05)
    # w1 is out of rotation: it takes neither the build sent back nor another one
    other = Submission().start([cluster.spec("roomy")], cluster.redis.url)
    client = redis_client(cluster.redis.url)
    queue = wire.queue_for(host_arch())
    deadline = time.monotonic() + 20
    while client.llen(queue) != 2:  # both queued
        assert time.monotonic() < deadline, client.llen(queue)
        time.sleep(0.05)
    lengths = []
    for _ in range(15):  # and they stay there (w1 would take one within 0.1 s)
        time.sleep(0.1)
        lengths.append(client.llen(queue))
    assert lengths == [2] * 15, lengths
    assert "worker w1: out of rotation (full: No space left on device)" in \
        (w1.host / "w1.log").read_text()
    # room again: w1 consumes again and builds what it can
    free.write_text(str(1 << 40))
    [roomy] = other.wait()
    assert roomy.ok and roomy.worker == "w1", roomy.error
    assert "worker w1: back in rotation: 1024.0 GiB free (at least 1.0 GiB)" in \
        (w1.host / "w1.log").read_text()
    cluster.only("w0", "w1")  # the full build goes to another worker
    [result] = submission.wait()
    print(f"a full disk on w1, out of rotation and back, the build done on w0: "
          f"{time.monotonic() - started:.1f} s")
    assert result.ok and result.worker == "w0", result.error
    [warning] = [e for e in submission.events if isinstance(e, BuildWarning)]
    assert warning.message.startswith("worker w1: ") and NO_SPACE in warning.message
    assert warning.message.endswith("the build goes to another worker")
    assert [e.stage for e in submission.events if isinstance(e, StageFailed)] == \
        ["configuration"]
    assert w1.running and w0.running  # w1 stays up for builds it can do
    assert result.output is not None
    assert [p.name for p in result.output.parent.iterdir()] == [result.output.name]


def test_builds_queued_when_the_broker_restarts_are_not_lost(cluster: Cluster) -> None:
    started = time.monotonic()
    cluster.only()  # no worker: the builds wait in their queue
    specs = [cluster.spec("queued1"), cluster.spec("queued2")]
    submission = Submission().start(specs, cluster.redis.url)
    queue = wire.queue_for(host_arch())
    client = redis_client(cluster.redis.url)
    deadline = time.monotonic() + 30
    while client.llen(queue) < 2:
        assert time.monotonic() < deadline, "the builds were not queued"
        time.sleep(0.05)
    cluster.redis.kill()  # SIGKILL: nothing is written on the way out
    time.sleep(1)  # the submitter finds the broker gone
    cluster.redis.start()  # same port, same directory: it reads its append-only file
    assert redis_client(cluster.redis.url).llen(queue) == 2
    cluster.only("w0", "w1")
    results = submission.wait()
    print(f"two builds queued across a broker restart: {time.monotonic() - started:.1f} s")
    assert [(Path(r.spec).stem, r.ok) for r in results] == [("queued1", True),
                                                            ("queued2", True)], \
        [r.error for r in results]
    assert all(r.output is not None and (r.output / "cluster.json").is_file()
               for r in results)


def test_which_failures_are_a_full_disk_and_how_far_a_build_goes_round() -> None:
    assert no_space({"ok": False, "error": f"configuration failed: x ({NO_SPACE})"})
    assert no_space({"ok": False, "error_type": "InsufficientDiskSpace",
                     "error": "Insufficient disk space: need 900 MiB, have 12 MiB in /w"})
    assert not no_space({"ok": False, "error": "Script returned non-zero exit code 1"})
    assert not no_space({"ok": True, "error": None})
    payload = {"name": "x", "spec": "x.yml"}
    first = rerouted(payload, WorkerSettings(name="w1"), "ENOSPC on w1")
    assert first is not None and first["excluded"] == ["w1"]
    assert first["reroute_error"] == "ENOSPC on w1" and first["rerouted_at"] > 0
    assert MAX_FULL == 2  # the second full disk ends it: the image may be too big itself
    assert rerouted(first, WorkerSettings(name="w0"), "ENOSPC on w0") is None


def test_the_provenance_names_the_worker_that_built_the_outputs(cluster: Cluster,
                                                                tmp_path: Path) -> None:
    started = time.monotonic()
    cluster.only("w0", "w1")
    spec = cluster.spec("signed", signed=True)
    [built] = Submission().start([spec], cluster.redis.url).wait()
    assert built.ok and built.output is not None, built.error
    builder, definition = builder_and_definition(built.output, cluster.key)
    assert builder == builder_id(built.worker) == \
        f"urn:imagecomposer:builder:worker:{built.worker}"
    # the same spec built here: only the provenance's builder id differs, and the files
    # that list the provenance's hash (SHA256SUMS and its signature)
    host = tmp_path / "local"
    host.mkdir()
    config = load_config(config_file(host / "config.yml", host, cluster.archive, None)).config
    local = tmp_path / "out"
    ImagePipeline(config, stages=STANDIN_STAGES, progress_bar=False).build(
        Spec.load(spec), BuildOptions(output_dir=local))
    print(f"a signed build on the cluster and here: {time.monotonic() - started:.1f} s")
    published, here = files(built.output), files(local)
    assert published.pop("cluster.json")
    assert here.keys() == published.keys()
    assert {"signed.raw", "signed.raw.sig", "manifest.json", "signed.lock.json"} <= set(here)
    naming = {"signed" + SUFFIX, "SHA256SUMS", "SHA256SUMS.sig"}
    assert sorted(n for n in here if here[n] != published[n]) == sorted(naming)
    assert builder_and_definition(local, cluster.key) == (BUILDER_ID, definition)


def task_results(url: str) -> dict[str, dict[str, object]]:
    """Every task result in the broker's result backend, by task id."""
    client = redis_client(url)
    found = {}
    for key in client.scan_iter("celery-task-meta-*"):
        data = json.loads(client.get(key))
        found[key.decode().removeprefix("celery-task-meta-")] = data
    return found


def test_ctrl_c_in_the_submitter_cancels_its_builds(cluster: Cluster) -> None:
    started = time.monotonic()
    cluster.only("w0")  # one worker: the first build runs, the second waits in the queue
    [w0] = [w for w in cluster.workers if w.name == "w0"]
    before = set(task_results(cluster.redis.url))
    specs = [cluster.spec("slowcancel"), cluster.spec("queuedcancel")]
    submitter = subprocess.Popen(
        [sys.executable, "-m", "imagecomposer.cli.main", "--config", str(w0.config),
         "build", "--cluster", cluster.redis.url, *map(str, specs)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **DETACHED)
    marker = w0.work / "building" / "slowcancel"  # the stand-in's configuration has begun
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and submitter.poll() is None, \
            submitter.communicate()
        time.sleep(0.05)
    submitter.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = submitter.communicate(timeout=30)
    assert submitter.returncode == 130, err.decode()
    assert b"Traceback" not in err
    deadline = time.monotonic() + 30
    while len(new := {k: v for k, v in task_results(cluster.redis.url).items()
                      if k not in before}) < 2:
        assert time.monotonic() < deadline, new
        time.sleep(0.1)
    print(f"Ctrl-C of a submitter, its builds cancelled: {time.monotonic() - started:.1f} s")
    results = {"revoked" if v["status"] == "REVOKED" else str(v["result"]["spec"]): v
               for v in new.values()}
    # the running build was interrupted on its worker as a local Ctrl-C does...
    slow = results["slowcancel.yml"]["result"]
    assert isinstance(slow, dict)
    assert (slow["ok"], slow["error_type"], slow["worker"]) == \
        (False, "BuildInterrupted", "w0"), slow
    assert "configuration" in str(slow["error"])
    # ...the queued one never started (revoked by Celery, or refused by the worker)
    queued = results.get("queuedcancel.yml", results.get("revoked"))
    assert queued is not None and (queued["status"] == "REVOKED" or queued["result"] == {
        "spec": "queuedcancel.yml", "worker": "w0", "ok": False, "exit_code": 130,
        "error_type": "BuildInterrupted", "error": "Interrupted: cancelled before it started"})
    print(f"the queued build: {queued['status']} {queued['result']}")
    # nothing of either was published, the task directory is gone
    outputs = cluster.shared / "outputs"
    assert not (outputs / "slowcancel").exists() and not (outputs / "queuedcancel").exists()
    assert not list((cluster.shared / ".tmp").iterdir())
    assert not list((w0.work / "cluster").iterdir())
    assert "slowcancel: cancelled by its submitter" in (w0.host / "w0.log").read_text()
    # the worker goes on with the next build
    [after] = Submission().start([cluster.spec("aftercancel")], cluster.redis.url).wait()
    assert after.ok and after.worker == "w0", after.error
    print(f"... and the next build on that worker: {time.monotonic() - started:.1f} s")

"""A real image built on a cluster (issue 17): the minimal example submitted with
``imagecomposer.build_many(..., cluster=URL)`` to a real ``imagecomposer worker`` (the CLI,
with the default stages: resolution from the host's Debian archive, dpkg, the disk, the
initramfs, the bootloader), and its published outputs compared byte for byte with the
session's local build of the same spec (``example_build``).

The tests in tests/cluster prove the engine's faults and the shared store with stand-in
compose and configuration stages; this one proves that what a worker publishes is the image
a local build makes. The worker is a host of its own (work directory, image, tree and
initramfs caches empty: every stage runs); only its package cache starts with hard links
of the session's .debs (checked by SHA256 on use), so that the test does not download them
again. Cost: one build (~40-90 s in CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import imagecomposer
from imagecomposer.config.model import Config
from imagecomposer.foundation.events import Event, StageStarted
from imagecomposer.inspect.outputs import compare_outputs
from imagecomposer.lock import Lock
from imagecomposer.pipeline.build import BuildReport
from imagecomposer.spec import Spec
from tests.cluster.conftest import DETACHED, ROOT, RedisServer
from tests.integration.conftest import EXAMPLES, cli_environment

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow]

ExampleBuild = Callable[[str, Path | None], tuple[Spec, BuildReport, Path]]
NAME = "debian-12-minimal"
WORKER = "real-w0"
# written by the cluster beside the build's outputs: who built it, which task
CLUSTER_RECORD = "cluster.json"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    server = RedisServer(tmp_path / "redis")
    server.data.mkdir()
    server.start()
    yield server.url
    server.stop()


def worker_config(host: Path, store: Path, config: Config) -> Path:
    """A build host of its own; its package cache starts with the session's .debs."""
    cache = host / "cache"
    shutil.copytree(config.package_cache_dir, cache / "packages", copy_function=os.link)
    path = host / "imagecomposer.yml"
    path.write_text(f"core: {{cache_dir: '{cache}', work_dir: '{host / 'work'}'}}\n"
                    f"storage: {{shared_store: '{store}'}}\n")
    return path


def test_a_worker_publishes_the_image_a_local_build_makes(
        example_build: ExampleBuild, config: Config, broker: str, tmp_path: Path) -> None:
    _, _, local = example_build(NAME, None)
    store = tmp_path / "store"
    store.mkdir()
    host = tmp_path / "host"
    host.mkdir()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "imagecomposer", "--config",
         str(worker_config(host, store, config)), "worker", "--cluster", broker,
         "--name", WORKER], cwd=ROOT, stdout=log, stderr=log, env=cli_environment(),
        **DETACHED)
    stages: list[str] = []

    def seen(event: Event) -> None:
        if isinstance(event, StageStarted):
            stages.append(event.stage)

    try:
        results = imagecomposer.build_many([EXAMPLES / f"{NAME}.yml"], cluster=broker,
                                           config=config, events=seen, timeout=1800)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
    worker_log = (tmp_path / "worker.log").read_text(errors="replace")
    assert len(results) == 1 and results[0].ok, (results, worker_log[-5000:])
    result = results[0]
    assert result.worker == WORKER and result.output is not None
    assert result.output.is_relative_to(store / "outputs")
    # every stage ran on the worker: nothing came from a cache of its own
    assert {"packages", "compose", "configuration", "finalize"} <= set(stages), stages

    local_lock = Lock.read(local / f"{NAME}.lock.json")
    cluster_lock = Lock.read(result.output / f"{NAME}.lock.json")
    assert cluster_lock == local_lock, (
        "the archive changed between the session's build and the worker's resolution; "
        "run again")
    report = compare_outputs(local, result.output, exempt=(CLUSTER_RECORD,),
                             workdir=tmp_path / "compare")
    assert report.identical, report.to_dict()
    assert {f"{NAME}.raw", f"{NAME}.qcow2", f"{NAME}.spdx.json", f"{NAME}.cdx.json",
            "manifest.json", "SHA256SUMS"} <= set(report.compared)
    # the dead-task cleanup: nothing of the build is left in the worker's work directory
    assert not list((host / "work" / "cluster").glob("*/*")), \
        list((host / "work" / "cluster").rglob("*"))[:20]

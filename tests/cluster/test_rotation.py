"""The out-of-rotation gate of a worker (imagecomposer.cluster.rotation) against a stand-in
for Celery's consumer: out once after a full disk, back when the free space reaches the
minimum, and the free space measured where the worker writes (test_cluster_hosts.py runs it
with real workers)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.cluster.rotation import Rotation, free_bytes
from imagecomposer.config.model import Config, Core


@attrs.define
class Consumer:
    """Records what the gate asks of Celery's consumer (call_soon runs at once)."""

    calls: list[tuple[str, str]] = attrs.field(factory=list)

    def cancel_task_queue(self, queue: str) -> None:
        self.calls.append(("cancel", queue))

    def add_task_queue(self, queue: str) -> None:
        self.calls.append(("add", queue))

    def call_soon(self, function: Any, *args: Any) -> None:
        function(*args)


def test_out_of_rotation_until_the_free_space_is_back() -> None:
    free = [0]
    rotation = Rotation("imagecomposer.x86_64", "w1", min_free=100, interval=0.02,
                        free=lambda: free[0])
    consumer = Consumer()
    rotation.ready(sender=consumer)
    rotation.take_out("full: No space left on device")
    rotation.take_out("again")  # already out: nothing more
    assert consumer.calls == [("cancel", "imagecomposer.x86_64")] and rotation.out.is_set()
    time.sleep(0.2)
    free[0] = 99  # not yet
    time.sleep(0.2)
    assert consumer.calls == [("cancel", "imagecomposer.x86_64")]
    free[0] = 100
    deadline = time.monotonic() + 10
    while rotation.out.is_set():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert consumer.calls == [("cancel", "imagecomposer.x86_64"), ("add", "imagecomposer.x86_64")]


def test_free_space_is_the_work_and_cache_directories_even_before_they_exist(
        tmp_path: Path) -> None:
    config = Config(core=Core(cache_dir=tmp_path / "not" / "yet", work_dir=tmp_path))
    assert abs(free_bytes(config) - shutil.disk_usage(tmp_path).free) < 64 << 20

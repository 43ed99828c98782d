"""A worker whose disk is full is taken out of rotation until it has room again.

After a build failed for a full disk on this worker (``ENOSPC``, the pipeline's free-space
check: :func:`imagecomposer.cluster.worker.no_space`), the worker stops consuming its queue
(Celery's ``cancel_task_queue``, what the ``cancel_consumer`` control command runs), so the
other workers get the builds. A thread looks at the free space of its work and cache
directories every ``interval`` seconds; once it is at least ``min_free`` bytes again, the
worker consumes its queue again (``add_task_queue``, run in the worker's event loop). Both
changes are logged (``out of rotation``, ``back in rotation``).

Celery's solo pool runs a build in the worker's main thread, the thread of its consumer:
:meth:`Rotation.take_out`, called from the build task, cancels the queue there and then,
before the task has ended, so the worker takes no further build. The consumer is the one
Celery hands to its ``worker_ready`` signal (:meth:`Rotation.ready`).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagecomposer.config.model import Config
from imagecomposer.foundation.units import human_size

log = logging.getLogger("imagecomposer.cluster")

MIN_FREE = 8 * 1024**3  # bytes a worker needs free to take builds again after a full disk
SPACE_CHECK = 30.0  # seconds between looks at the free space while out of rotation


def free_bytes(config: Config) -> int:
    """The free space of the worker's work and cache directories (the smaller one)."""
    return min(shutil.disk_usage(_existing(path)).free
               for path in (config.core.work_dir, config.core.cache_dir))


class Rotation:
    """Whether this worker consumes its queue: out after a full disk, back with room."""

    def __init__(self, queue: str, name: str, *, min_free: int, interval: float,
                 free: Callable[[], int]) -> None:
        self.queue = queue
        self.name = name
        self.min_free = min_free
        self.interval = interval
        self.free = free
        self.consumer: Any = None
        self.out = threading.Event()
        self.stopped = threading.Event()

    def ready(self, sender: Any = None, **_: Any) -> None:
        """Celery's ``worker_ready`` signal: its sender is the worker's consumer."""
        self.consumer = sender

    def take_out(self, why: str) -> None:
        """Stop consuming (from the build task, in the consumer's thread) until the free
        space is back above the minimum."""
        if self.consumer is None or self.out.is_set():
            return
        self.consumer.cancel_task_queue(self.queue)
        self.out.set()
        log.warning("worker %s: out of rotation (%s): it takes no build until %s are free "
                    "(looked at every %g s)", self.name, why, human_size(self.min_free),
                    self.interval)
        threading.Thread(target=self._watch, name="rotation", daemon=True).start()

    def _watch(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                free = self.free()
            except OSError as exc:
                log.warning("worker %s: cannot measure its free space: %s", self.name, exc)
                continue
            if free >= self.min_free:
                self.consumer.call_soon(self._back, free)  # in the worker's event loop
                return

    def _back(self, free: int) -> None:
        self.consumer.add_task_queue(self.queue)
        self.out.clear()
        log.warning("worker %s: back in rotation: %s free (at least %s)", self.name,
                    human_size(free), human_size(self.min_free))


def _existing(path: Path) -> Path:
    """``path``, or its nearest existing parent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path

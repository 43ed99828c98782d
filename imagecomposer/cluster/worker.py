"""``imagecomposer worker``: one build host of a cluster.

A worker consumes the queue of its architecture (``imagecomposer.x86_64``, ...), one build
at a time (Celery's *solo* pool, prefetch 1: it reserves only the build it runs). Each build
runs exactly as a local one, through :func:`imagecomposer.pipeline.many.build_many` (a child
process of its own that dies with the worker), with the worker's own configuration: its work
directory, its local caches, the shared store (``storage.shared_store``) and its secrets.

For each task the worker unpacks the spec bundle into ``WORK/cluster/TASK/spec``, copies
the secrets the spec names from its secrets directory, builds into ``WORK/cluster/TASK/out``,
and publishes the outputs into the shared output store ``STORE/outputs/NAME/DIGEST/`` with
one rename (``DIGEST``: the SHA256 of the output's file list and file hashes), with
``cluster.json`` naming the worker. The task directory is removed afterwards, and at the
next start after a kill. Events go to the submitter through a Redis list per task.

A build that fails for a full disk (``No space left on device``, ENOSPC, or the pipeline's
free-space check) is taken for this worker's failure, not the build's: the worker says so (a
warning event to the submitter, a log line) and sends the build back to its queue with
itself excluded (Celery's ``retry``, same task id). A worker that receives a build it is
excluded from puts it back after :data:`REROUTE_PAUSE` seconds; when no other worker has
taken it within :data:`REROUTE_WAIT` seconds, the build fails with the full disk's error.
A build that fails so on :data:`MAX_FULL` workers fails there and then: an image whose own
filesystem is too small fails with ENOSPC on every worker.

A build its submitter cancels (Ctrl-C, SIGTERM, ``cancel``: a mark in Redis,
:func:`imagecomposer.cluster.wire.cancel_key`) is interrupted as a local Ctrl-C interrupts
it (:class:`imagecomposer.cluster.app.CancelWatch` sets ``build_many``'s ``cancel``): its
build process unwinds and cleans up, nothing is published; one not started yet never starts.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import logging
import os
import platform
import shutil
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.cache.shared import SharedStore, copy_tree_atomically
from imagecomposer.cluster import bundle, wire
from imagecomposer.cluster.app import (
    VISIBILITY_TIMEOUT,
    CancelWatch,
    Lease,
    celery_signals,
    make_app,
    redis_client,
)
from imagecomposer.cluster.rotation import MIN_FREE, SPACE_CHECK, Rotation, free_bytes
from imagecomposer.config.model import Config
from imagecomposer.foundation.digest import sha256_file
from imagecomposer.foundation.errors import (
    BuildInterrupted,
    ClusterError,
    ImageComposerError,
    describe,
)
from imagecomposer.foundation.events import BuildWarning, Event
from imagecomposer.pipeline.context import BuildContext, BuildOptions
from imagecomposer.pipeline.engine import Stage
from imagecomposer.pipeline.many import build_many
from imagecomposer.pipeline.stages import DEFAULT_STAGES

log = logging.getLogger("imagecomposer.cluster")

REROUTE_PAUSE = 1.0  # seconds an excluded worker holds a build before putting it back
REROUTE_WAIT = 600.0  # seconds a rerouted build waits for a worker that is not excluded
MAX_FULL = 2  # workers a build may fail on for a full disk before it fails for good
NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"

ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def host_arch() -> str:
    machine = platform.machine()
    return ARCHES.get(machine, machine)


@attrs.frozen
class WorkerSettings:
    """One worker: where it works and what it offers."""

    name: str = attrs.field(factory=lambda: f"imagecomposer@{socket.gethostname()}")
    arch: str = attrs.field(factory=host_arch)
    secrets_dir: Path | None = None  # signing keys, passphrases: never in a task
    visibility_timeout: float = VISIBILITY_TIMEOUT
    # after a full disk: out of rotation until this many bytes are free (imagecomposer.
    # cluster.rotation), looked at every space_check seconds, measured by free_space
    min_free: int = MIN_FREE
    space_check: float = SPACE_CHECK
    free_space: Callable[[Config], int] = free_bytes


def store_of(config: Config) -> SharedStore:
    if config.storage.shared_store is None:
        raise ClusterError("a worker needs a shared store: set storage.shared_store (or "
                           "$IMAGECOMPOSER_SHARED_STORE, or --shared-store) to a directory "
                           "every worker mounts")
    return SharedStore(config.storage.shared_store)


def tasks_dir(config: Config) -> Path:
    return config.core.work_dir / "cluster"


def remove_leftovers(config: Config) -> list[Path]:
    """What a killed worker left: its task directories, its partial shared-store copies."""
    removed = []
    root = tasks_dir(config)
    if root.is_dir():
        for leftover in sorted(root.iterdir()):
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
    if config.storage.shared_store is not None:
        removed += SharedStore(config.storage.shared_store).remove_leftovers()
    for path in removed:
        log.info("removed the leftover %s of an earlier run of this worker", path)
    return removed


def output_digest(directory: Path) -> str:
    """The SHA256 of a build's outputs: every file's relative path and SHA256."""
    lines = [f"{sha256_file(p)}  {p.relative_to(directory).as_posix()}\n"
             for p in sorted(directory.rglob("*")) if p.is_file()]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def execute(payload: dict[str, Any], *, config: Config, settings: WorkerSettings,
            task_id: str, attempt: int, emit: Any,
            stages: Sequence[Stage[BuildContext, Any]] = DEFAULT_STAGES,
            cancel: threading.Event | None = None) -> dict[str, Any]:
    """Run one build task; returns the result the submitter turns into a BuildResult.
    ``cancel`` set: the build is interrupted as by Ctrl-C, nothing is published."""
    store = store_of(config)
    name = str(payload["name"])
    task_root = tasks_dir(config) / task_id
    shutil.rmtree(task_root, ignore_errors=True)
    result: dict[str, Any] = {"spec": str(payload["spec"]), "worker": settings.name,
                              "attempt": attempt}
    try:
        spec_dir = task_root / "spec"
        data = base64.b64decode(payload["bundle"])
        bundle.unpack(data, str(payload["digest"]), spec_dir)
        bundle.place_secrets(list(payload.get("secrets", [])), settings.secrets_dir,
                             spec_dir)
        out = task_root / "out"
        results = build_many([spec_dir / str(payload["spec"])], config=config,
                             options=BuildOptions(output_dir=out, worker=settings.name),
                             events=emit,
                             variables=dict(payload.get("variables") or {}),
                             stages=stages, max_concurrent=1, cancel=cancel)
        built = results[0]
        result.update(ok=built.ok, error=built.error, error_type=built.error_type,
                      exit_code=built.exit_code)
        if built.ok:
            result["output"] = str(publish(out, store, name, settings, task_id,
                                           str(payload["digest"])))
    except ImageComposerError as exc:
        result.update(ok=False, error=describe(exc), error_type=type(exc).__name__,
                      exit_code=exc.exit_code)
    except OSError as exc:  # a full disk, an unwritable store: this worker's failure
        result.update(ok=False, error=f"worker {settings.name}: {describe(exc)}",
                      error_type=type(exc).__name__, exit_code=1)
    finally:
        shutil.rmtree(task_root, ignore_errors=True)
    return result


def no_space(result: dict[str, Any]) -> bool:
    """Whether a build failed for a full disk (an OSError, a tool's message, or the
    pipeline's free-space check)."""
    error = str(result.get("error") or "")
    return not result.get("ok") and (result.get("error_type") == "InsufficientDiskSpace"
                                      or NO_SPACE in error
                                      or "Insufficient disk space" in error)


def cancelled(payload: dict[str, Any], settings: WorkerSettings) -> dict[str, Any]:
    """The result of a build cancelled before it started (never built)."""
    return {"spec": str(payload["spec"]), "worker": settings.name, "ok": False,
            "exit_code": BuildInterrupted.exit_code, "error_type": "BuildInterrupted",
            "error": "Interrupted: cancelled before it started"}


def excluded_from(payload: dict[str, Any], settings: WorkerSettings) -> bool:
    return settings.name in (payload.get("excluded") or [])


def rerouted(payload: dict[str, Any], settings: WorkerSettings, error: str
             ) -> dict[str, Any] | None:
    """The payload sent back to the queue after a full disk on this worker: this worker
    excluded, the first reroute's time kept (what :data:`REROUTE_WAIT` counts from); None
    when the build has now failed so on :data:`MAX_FULL` workers (it fails)."""
    excluded = [*(payload.get("excluded") or []), settings.name]
    if len(excluded) >= MAX_FULL:
        return None
    return {**payload, "excluded": excluded, "reroute_error": error,
            "rerouted_at": payload.get("rerouted_at") or time.time()}


def publish(out: Path, store: SharedStore, name: str, settings: WorkerSettings,
            task_id: str, bundle_digest: str) -> Path:
    """Put the outputs into ``STORE/outputs/NAME/DIGEST`` with one rename, with a
    ``cluster.json`` record naming the worker; an identical output already there stays."""
    digest = output_digest(out)
    files = {p.relative_to(out).as_posix(): sha256_file(p)
             for p in sorted(out.rglob("*")) if p.is_file()}
    record = {"worker": settings.name, "arch": settings.arch, "task": task_id,
              "bundle": bundle_digest, "outputs": digest, "files": files}
    (out / "cluster.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    final = store.root / "outputs" / name / digest
    if not copy_tree_atomically(out, final):
        log.info("%s: identical outputs already in the store (%s)", name, final)
    return final


def run_worker(url: str, config: Config, settings: WorkerSettings, *,
               stages: Sequence[Stage[BuildContext, Any]] = DEFAULT_STAGES,
               loglevel: str = "WARNING") -> None:
    """Serve builds until stopped (SIGTERM: finishes the running build first)."""
    store_of(config)
    remove_leftovers(config)
    app = make_app(url, visibility_timeout=settings.visibility_timeout)
    client = redis_client(url)
    queue = wire.queue_for(settings.arch)
    rotation = Rotation(queue, settings.name, min_free=settings.min_free,
                        interval=settings.space_check,
                        free=lambda: settings.free_space(config))
    celery_signals().worker_ready.connect(rotation.ready, weak=False)

    # max_retries=None: a build sent back (a full disk) may go round until REROUTE_WAIT
    @app.task(name=wire.TASK, bind=True, max_retries=None)  # type: ignore[untyped-decorator]
    def build(self: Any, payload: dict[str, Any]) -> dict[str, Any]:
        task_id = str(self.request.id)
        if client.exists(wire.cancel_key(task_id)):  # cancelled while it was queued
            log.warning("%s: cancelled by its submitter before it started", payload["name"])
            return cancelled(payload, settings)
        if excluded_from(payload, settings):  # this worker's disk was full for it
            time.sleep(REROUTE_PAUSE)
            waited = time.time() - float(payload.get("rerouted_at") or 0)
            if waited < REROUTE_WAIT:
                raise self.retry(args=[payload], countdown=0)
            return {"spec": str(payload["spec"]), "worker": settings.name, "ok": False,
                    "exit_code": 1, "error_type": "OSError",
                    "error": f"{payload.get('reroute_error')} (no other worker took the "
                             f"build within {REROUTE_WAIT:g} s)"}
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        key = wire.events_key(task_id)
        attempt = int(client.incr(f"imagecomposer:attempts:{task_id}"))
        client.expire(f"imagecomposer:attempts:{task_id}", wire.EVENTS_TTL)

        def push(text: str) -> None:
            client.rpush(key, text)
            client.expire(key, wire.EVENTS_TTL)

        def emit(event: Event) -> None:
            push(wire.encode_event(event))

        push(wire.encode_note("started", worker=settings.name, attempt=attempt,
                              redelivered=redelivered, pid=os.getpid()))
        tag = (self.request.properties or {}).get("delivery_tag")
        with (Lease(client, tag, settings.visibility_timeout),
              CancelWatch(client, wire.cancel_key(task_id)) as watch):
            result = execute(payload, config=config, settings=settings, task_id=task_id,
                             attempt=attempt, emit=emit, stages=stages,
                             cancel=watch.cancelled)
        if watch.cancelled.is_set() and not result.get("ok"):
            log.warning("%s: cancelled by its submitter: %s", payload["name"], result["error"])
            return result
        if not no_space(result):
            return result
        again = rerouted(payload, settings, str(result["error"]))
        if again is None:
            workers = ", ".join([*(payload.get("excluded") or []), settings.name])
            result["error"] = (f"{result['error']} (no room on {MAX_FULL} workers: {workers};"
                               f" is the image too big for its own filesystem?)")
            return result
        message = f"worker {settings.name}: {result['error']}; the build goes to another worker"
        log.warning("%s", message)
        emit(BuildWarning(message, "imagecomposer.cluster", build=str(payload["name"])))
        rotation.take_out(f"{payload['name']}: {NO_SPACE}")  # before the build is requeued
        raise self.retry(args=[again], countdown=0)

    app.worker_main(["worker", "--pool", "solo", "--concurrency", "1",
                     "--prefetch-multiplier", "1", "--queues", queue,
                     "--hostname", settings.name, "--loglevel", loglevel,
                     "--without-gossip", "--without-mingle", "--task-events"])

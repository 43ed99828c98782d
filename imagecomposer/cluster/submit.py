"""Submitting builds to a cluster and collecting them: what ``imagecomposer build --cluster
URL a.yml b.yml`` and ``imagecomposer.build_many(..., cluster=URL)`` run.

Each spec is loaded here first (a broken spec fails before anything is sent), bundled with
the files it references (:mod:`imagecomposer.cluster.bundle`; secrets stay behind) and sent
to the queue of its architecture. Every event of every build reaches ``events`` in the
calling thread, in order per build (a redelivered build's events start again from its
first stage, after a log line naming the new worker); the results come back in the order of
``specs``, each naming the worker and where its outputs are in the shared store.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.cluster import bundle, wire
from imagecomposer.cluster.app import broker_errors, make_app, redis_client
from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import BuildInterrupted, ClusterError, UsageError
from imagecomposer.foundation.events import EventSink
from imagecomposer.pipeline.many import BuildResult
from imagecomposer.spec.model import Spec

log = logging.getLogger("imagecomposer.cluster")


@attrs.define
class _Submitted:
    index: int
    label: str
    name: str
    async_result: Any
    result: BuildResult | None = None


def payload_for(spec_file: Path, spec: Spec, variables: Mapping[str, str]) -> dict[str, Any]:
    made = bundle.make_bundle(spec_file, spec)
    return {"name": spec.image.name, "spec": made.spec, "digest": made.digest,
            "bundle": base64.b64encode(made.data).decode("ascii"),
            "secrets": list(made.secrets), "variables": dict(variables)}


def submit_many(specs: Sequence[Spec | Path | str], url: str, *, config: Config,
                events: EventSink | None = None,
                variables: Mapping[str, str] | None = None,
                timeout: float | None = None,
                cancel: threading.Event | None = None) -> list[BuildResult]:
    """Build every spec file on the cluster at ``url``; wait for all of them.

    Cancelling: ``cancel`` set (from any thread), or an exception while waiting (Ctrl-C,
    SIGTERM in the CLI, an exception in ``events``) cancels every build that has not ended
    (:func:`cancel_builds`); with ``cancel`` those come back as ``BuildInterrupted``
    results, an exception is raised again."""
    variables = dict(variables or {})
    loaded: list[tuple[str, Path, Spec]] = []
    for item in specs:
        if isinstance(item, Spec):
            raise UsageError("a cluster build takes spec files (their referenced files "
                             "travel with them), not Spec objects")
        path = Path(item)
        loaded.append((str(item), path, Spec.load(path, variables=variables,
                                                   allowed_paths=config.core.allowed_paths)))
    payloads = [payload_for(path, spec, variables) for _, path, spec in loaded]
    app = make_app(url)
    client = redis_client(url)
    try:
        client.ping()
    except Exception as exc:
        raise ClusterError(f"cannot reach the build cluster's broker at {url}: {exc}") from None
    submitted = []
    for index, ((label, _, spec), payload) in enumerate(zip(loaded, payloads, strict=True)):
        queue = wire.queue_for(spec.image.base.arch)
        sent = app.send_task(wire.TASK, args=[payload], queue=queue)
        log.info("%s: submitted as %s to %s", spec.image.name, sent.id, queue)
        submitted.append(_Submitted(index, label, spec.image.name, sent))
    try:
        _collect(submitted, client, events, timeout, cancel)
    except BaseException:
        cancel_builds(submitted, client)
        raise
    if cancel_builds(submitted, client):
        log.warning("cancelled the builds that had not ended")
    return [build.result or BuildResult(build.label, False, error="Interrupted: cancelled",
                                        error_type="BuildInterrupted",
                                        exit_code=BuildInterrupted.exit_code)
            for build in submitted]


def cancel_builds(submitted: list[_Submitted], client: Any) -> int:
    """Cancel every build that has not ended: its cancel mark for the workers (the one
    running it interrupts it as a local Ctrl-C does, a worker receiving it later does not
    start it), and Celery's revoke (idle workers drop it from the queue). The number."""
    unfinished = [build for build in submitted if build.result is None]
    for build in unfinished:
        try:
            client.set(wire.cancel_key(build.async_result.id), b"1", ex=wire.EVENTS_TTL)
            build.async_result.revoke()
        except Exception as exc:  # the broker away: the builds run on; say so
            log.warning("%s: could not cancel it on the cluster: %s", build.name, exc)
    return len(unfinished)


def _collect(submitted: list[_Submitted], client: Any, events: EventSink | None,
             timeout: float | None, cancel: threading.Event | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = list(submitted)
    unreachable = broker_errors()
    lost: float | None = None  # since when the broker has been unreachable
    while pending and not (cancel is not None and cancel.is_set()):
        if deadline is not None and time.monotonic() > deadline:
            names = ", ".join(item.name for item in pending)
            raise ClusterError(f"cluster builds still running after {timeout:g} s: {names}")
        try:
            _poll(pending, client, events)
        except unreachable as exc:  # restarting: the queued builds are in its append-only file
            if lost is None:
                lost = time.monotonic()
                log.warning("lost the build cluster's broker (%s); waiting for it", exc)
            time.sleep(0.5)
            continue
        if lost is not None:
            log.warning("the build cluster's broker is back after %.1f s",
                        time.monotonic() - lost)
            lost = None


def _poll(pending: list[_Submitted], client: Any, events: EventSink | None) -> None:
    """Deliver the events that came, collect the builds that have ended."""
    got = client.blpop([wire.events_key(i.async_result.id) for i in pending], timeout=0.5)
    if got is not None:
        key, text = got
        item = next(i for i in pending
                    if wire.events_key(i.async_result.id) == key.decode())
        _deliver(item, text, events)
    for item in list(pending):
        if item.async_result.ready():
            _drain(item, client, events)
            item.result = _result(item)
            client.delete(wire.events_key(item.async_result.id))
            pending.remove(item)


def _drain(item: _Submitted, client: Any, events: EventSink | None) -> None:
    key = wire.events_key(item.async_result.id)
    while (text := client.lpop(key)) is not None:
        _deliver(item, text, events)


def _deliver(item: _Submitted, text: bytes, events: EventSink | None) -> None:
    message = wire.decode(text)
    if isinstance(message, dict):
        if message.get("note") == "started":
            log.info("%s: running on %s (attempt %s)", item.name, message.get("worker"),
                     message.get("attempt"))
        return
    if events is not None:
        events(message)


def _result(item: _Submitted) -> BuildResult:
    try:
        data = item.async_result.get(propagate=False)
    except Exception as exc:
        data = exc
    if not isinstance(data, dict):
        return BuildResult(item.label, False, error=f"the cluster task failed: {data}",
                           error_type="ClusterError", exit_code=1)
    output = data.get("output")
    return BuildResult(item.label, bool(data.get("ok")), error=data.get("error"),
                       error_type=data.get("error_type"),
                       exit_code=int(data.get("exit_code") or 0),
                       worker=data.get("worker"),
                       output=Path(output) if output else None)

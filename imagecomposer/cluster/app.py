"""The Celery application both sides use, and the lease that keeps a running build's message
from being redelivered while its worker lives (docs/distributed.md has the measurements).

Celery with a Redis broker: a build is acknowledged only when it has ended
(``task_acks_late``); until then its message sits in Redis's *unacked* set. A worker that
dies (SIGKILL, a lost host) never acknowledges it, and a live worker restores the message
to its queue once it is older than the visibility timeout: the build is redelivered to
another worker of the same architecture. A build longer than the visibility timeout would
be redelivered while it still runs, so the worker renews its message's timestamp every
``visibility_timeout / 4`` seconds (:class:`Lease`): a live worker's build is never
redelivered, a dead worker's is after at most ``visibility_timeout`` +
``RESTORE_INTERVAL`` seconds.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

from imagecomposer.foundation.errors import ClusterError

VISIBILITY_TIMEOUT = 60.0  # seconds without a lease renewal before a build is redelivered
RESTORE_INTERVAL = 2  # seconds between a worker's sweeps for expired messages
CANCEL_POLL = 0.5  # seconds between a worker's looks at its running build's cancel mark
UNACKED_INDEX = "unacked_index"  # kombu's Redis transport: sorted set of unacked messages


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ClusterError("distributed builds need the cluster extra: pip install "
                           "'imagecomposer[cluster]' (Celery and the Redis client)") from None


def make_app(url: str, *, visibility_timeout: float = VISIBILITY_TIMEOUT) -> Any:
    """The Celery application for the broker (and result backend) at ``url``
    (``redis://host:port/db``)."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ClusterError(f"cluster URL {url!r}: expected redis://HOST:PORT/DB (the broker)")
    celery = _module("celery")
    app = celery.Celery("imagecomposer", broker=url, backend=url, set_as_current=False)
    transport = {"visibility_timeout": visibility_timeout,
                 "unacked_restore_interval": RESTORE_INTERVAL,
                 "unacked_restore_throttle": 1}
    app.conf.update(
        task_acks_late=True,  # acknowledged when the build has ended, not when it starts
        task_reject_on_worker_lost=True,  # a pool child lost mid-build: requeued at once
        worker_prefetch_multiplier=1,  # one build reserved per worker, the one it runs
        worker_concurrency=1,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=7 * 24 * 3600,
        task_track_started=True,
        worker_send_task_events=True,  # Flower and `celery events` see the builds
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


def celery_signals() -> Any:
    """``celery.signals`` (the worker's ``worker_ready`` hands over its consumer)."""
    return _module("celery.signals")


def broker_errors() -> tuple[type[BaseException], ...]:
    """What a client raises while the broker is away (restarting, or its host lost)."""
    redis = _module("redis.exceptions")
    kombu = _module("kombu.exceptions")
    return (redis.ConnectionError, redis.TimeoutError, kombu.OperationalError)


def redis_client(url: str) -> Any:
    return _module("redis").Redis.from_url(url)


class Lease:
    """Renews the running build's unacked message while this worker lives."""

    def __init__(self, client: Any, delivery_tag: str | None, visibility_timeout: float
                 ) -> None:
        self.client = client
        self.tag = delivery_tag
        self.period = max(0.5, visibility_timeout / 4)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def __enter__(self) -> Lease:
        if self.tag is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        while not self.stopped.wait(self.period):
            try:
                # XX: renew only; an acknowledged or restored message is not brought back
                self.client.zadd(UNACKED_INDEX, {self.tag: time.time()}, xx=True)
            except Exception:  # the broker restarting: the next renewal tries again
                continue


class CancelWatch:
    """Sets ``cancelled`` once the running build's cancel mark (``key``) is in Redis.

    Celery's ``revoke(terminate=True)`` cannot stop the build: the solo pool runs it in the
    worker's main thread, which handles no control message until the task returns, and it
    has no pool process to signal. So the submitter sets the mark (besides revoking), and
    this thread of the worker looks for it every :data:`CANCEL_POLL` seconds."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        self.cancelled = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cancel-watch", daemon=True)

    def __enter__(self) -> CancelWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stopped.wait(CANCEL_POLL):
            try:
                if self.client.exists(self.key):
                    self.cancelled.set()
                    return
            except Exception:  # the broker restarting: look again
                continue

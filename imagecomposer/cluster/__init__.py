"""Builds beyond one machine (docs/distributed.md): Celery tasks on a Redis broker, one
build at a time per worker, a queue per architecture, a shared content-addressed store.

:mod:`.submit` sends builds and collects them (``build_many(..., cluster=URL)``),
:mod:`.worker` serves them (``imagecomposer worker``), :mod:`.bundle` packs a spec with the
files it references, :mod:`.wire` names queues and keys and carries events, :mod:`.app` is
the Celery application and the lease that keeps a live worker's build from redelivery.
Celery and the Redis client are the optional ``cluster`` extra, imported on first use.
"""

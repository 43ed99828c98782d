"""``imagecomposer.build_many``: local builds, or with ``cluster=URL`` builds on a cluster."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from imagecomposer.cluster.submit import submit_many
from imagecomposer.config import load_config
from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import UsageError
from imagecomposer.foundation.events import EventSink
from imagecomposer.pipeline import many
from imagecomposer.pipeline.context import BuildContext, BuildOptions
from imagecomposer.pipeline.engine import Stage
from imagecomposer.pipeline.many import BuildResult
from imagecomposer.pipeline.stages import DEFAULT_STAGES
from imagecomposer.spec.model import Spec

__all__ = ["BuildResult", "build_many"]


def build_many(specs: Sequence[Spec | Path | str], *, config: Config | None = None,
               options: BuildOptions | None = None, events: EventSink | None = None,
               max_concurrent: int | None = None,
               variables: Mapping[str, str] | None = None,
               stages: Sequence[Stage[BuildContext, Any]] = DEFAULT_STAGES,
               cluster: str | None = None, timeout: float | None = None,
               cancel: threading.Event | None = None) -> list[BuildResult]:
    """Build every spec: here (:func:`imagecomposer.pipeline.many.build_many`), or with
    ``cluster`` (``redis://HOST:PORT/DB``) on the workers of that cluster, each spec file
    on a worker of its architecture; the results are in the order of ``specs``.

    ``cancel`` (set from another thread) stops the builds: running ones are interrupted
    and clean up as after Ctrl-C (on their worker too), the others never start; each comes
    back as a ``BuildInterrupted`` result."""
    if cluster is None:
        return many.build_many(specs, config=config, options=options, events=events,
                               max_concurrent=max_concurrent, variables=variables,
                               stages=stages, cancel=cancel)
    if options is not None and options != BuildOptions():
        raise UsageError("build options (--stage, --no-cache, -o, ...) are not supported "
                         "with a cluster yet: each worker builds with its own configuration")
    config = config if config is not None else load_config().config
    return submit_many(specs, cluster, config=config, events=events, variables=variables,
                       timeout=timeout, cancel=cancel)

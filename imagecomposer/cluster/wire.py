"""What travels between the submitter and the workers besides the task itself: queue names,
Redis key names, and build events as JSON (only :mod:`imagecomposer.foundation.events`
classes are rebuilt from it: nothing else is instantiated from a message)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.foundation import events as events_module
from imagecomposer.foundation.events import Event

TASK = "imagecomposer.build"
EVENTS_TTL = 24 * 3600  # seconds an uncollected event list stays in Redis


def queue_for(arch: str) -> str:
    """The queue of the workers of one architecture (a build goes to its spec's arch)."""
    return f"imagecomposer.{arch}"


def events_key(task_id: str) -> str:
    return f"imagecomposer:events:{task_id}"


def cancel_key(task_id: str) -> str:
    """Set by the submitter when it cancels the build (Ctrl-C, SIGTERM, ``cancel``): the
    worker running it interrupts it, a worker receiving it later does not start it."""
    return f"imagecomposer:cancel:{task_id}"


def encode_event(event: Event) -> str:
    fields = {f.name: _plain(getattr(event, f.name)) for f in attrs.fields(type(event))}
    return json.dumps({"kind": type(event).__name__, "fields": fields}, sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return {"path": str(value)}
    return value


def encode_note(kind: str, **fields: Any) -> str:
    """A message about the task itself (``started``: worker, attempt), not a build event."""
    return json.dumps({"note": kind, **fields}, sort_keys=True)


def decode(text: str | bytes) -> Event | dict[str, Any]:
    """An event, or a note (a dict with ``note``)."""
    data = json.loads(text)
    if "note" in data:
        return dict(data)
    cls = getattr(events_module, str(data["kind"]), None)
    if not (isinstance(cls, type) and issubclass(cls, Event) and attrs.has(cls)):
        raise ValueError(f"not a build event: {data['kind']!r}")
    fields = {k: Path(v["path"]) if isinstance(v, dict) and set(v) == {"path"} else v
              for k, v in data["fields"].items()}
    event = cls(**fields)
    assert isinstance(event, Event)
    return event

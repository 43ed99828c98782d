"""The one event model: what a build reports while it runs, for library callers and the CLI.

Every object that works for a build (the engine, the resolver and providers, the package
cache, the composer, the exporter) reports through one callable, :data:`EventSink`, with
the frozen attrs classes below. ``ImagePipeline(config, events=callback)`` hands the
callback every event of every stage, in order; the CLI's log lines and progress bar are
just one consumer of the same stream (:class:`imagecomposer.foundation.console.Console`).

Every event carries ``build`` (the image name) and ``stage`` (the stage it happened in).
An object used alone leaves them empty; the pipeline fills them in before the callback
sees the event. Events compare, log and serialize (``attrs.asdict``) like any attrs value,
and pickle, so a build in another process can forward them (``build_many``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs

__all__ = [
    "BuildEnded", "BuildWarning", "ConfigurationStep", "DiskStep", "DownloadProgress", "Event",
    "EventSink", "ExportStep", "FetchFinished", "FetchStarted", "InstallStep", "MetadataLoaded",
    "PackageFetched", "Progress", "Resolved", "StageFailed", "StageFinished", "StageSkipped",
    "StageStarted", "fan_out",
]


@attrs.frozen
class Event:
    build: str = attrs.field(default="", kw_only=True)  # image name, set by the pipeline
    stage: str = attrs.field(default="", kw_only=True)  # stage it happened in


# --- stages (the engine) -------------------------------------------------------------------


@attrs.frozen
class StageStarted(Event):
    reason: str  # why it runs: "first run", "input 'lock' changed", "forced by --no-cache"


@attrs.frozen
class StageFinished(Event):
    seconds: float


@attrs.frozen
class StageSkipped(Event):
    reason: str  # "up to date", "not in build.stages", "--skip-stage", "image cache hit"


@attrs.frozen
class StageFailed(Event):
    seconds: float
    error: str


@attrs.frozen
class Progress(Event):
    """Work inside a stage: ``done`` of ``total`` units (packages, bytes, files); ``total``
    None when it is not known in advance. Reported where a long step can measure itself:
    packages fetched, dpkg's unpacked and configured packages, files added to an
    initramfs, disk assembly steps, bytes converted, bytes hashed. ``what`` names the step
    ("unpacking", "converting to qcow2"); consecutive events with the same ``what`` are the
    same step advancing."""

    what: str
    done: int
    total: int | None = None
    unit: str = ""


@attrs.frozen
class BuildWarning(Event):
    """A warning the build logged (``logger`` names where): the log line is already out."""

    message: str
    logger: str = "imagecomposer"


@attrs.frozen
class BuildEnded(Event):
    """The build's result, its last event. ``output``: where the result is (the output
    directory; with ``--stage``, the last stage's result in the workspace; None when that
    stage leaves nothing, as validate). A failure has ``ok`` False, the error message,
    ``stage`` naming the stage it happened in (empty when it happened before the first),
    and the exit code the CLI ends with."""

    ok: bool
    seconds: float
    output: Path | None = None
    error: str = ""
    exit_code: int = 0


# --- packages (providers, resolver, package cache) ------------------------------------------


@attrs.frozen
class MetadataLoaded(Event):
    repository: str
    packages: int
    from_cache: bool  # parsed pool came from the .solv cache
    seconds: float


@attrs.frozen
class Resolved(Event):
    packages: int
    download_bytes: int
    seconds: float


@attrs.frozen
class FetchStarted(Event):
    packages: int  # in the lock
    cached: int  # already in the cache
    download_packages: int
    download_bytes: int


@attrs.frozen
class DownloadProgress(Event):
    package: str
    bytes: int  # bytes received since the previous event (negative: a retry discarded them)


@attrs.frozen
class PackageFetched(Event):
    package: str
    path: Path
    size: int
    downloaded: bool  # False: it was a cache hit


@attrs.frozen
class FetchFinished(Event):
    downloaded: int
    downloaded_bytes: int
    cached: int
    seconds: float


# --- compose, configuration, disk, export ---------------------------------------------------


@attrs.frozen
class InstallStep(Event):
    """Installing a lock into a tree: "installing 212 deb packages", "restored from the
    installed-tree cache"."""

    what: str


@attrs.frozen
class ConfigurationStep(Event):
    """One configuration step: "users", "initramfs", "bootloader: systemd-boot"."""

    what: str


@attrs.frozen
class DiskStep(Event):
    """One step of writing the disk image: the partition table, a filesystem, LUKS2."""

    what: str


@attrs.frozen
class ExportStep(Event):
    """One export step done: ``kind`` convert | compress | checksum | sign | attest | commit."""

    kind: str
    name: str
    seconds: float


EventSink = Callable[[Event], None]


def fan_out(*sinks: EventSink | None) -> EventSink:
    """One sink that forwards to each of ``sinks`` (None entries are left out)."""
    active = [s for s in sinks if s is not None]

    def sink(event: Event) -> None:
        for s in active:
            s(event)

    return sink

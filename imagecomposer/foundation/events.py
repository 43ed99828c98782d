"""Structured progress events of the packages stage, for library callers.

Pass a callable (``events=``) to :class:`~imagecomposer.resolver.Resolver` or
:meth:`~imagecomposer.cache.PackageCache.fetch`; it receives these frozen objects in order.
The CLI's progress bar and log lines are just one consumer
(:class:`imagecomposer.cache.progress.Progress`).
"""

from __future__ import annotations

from pathlib import Path

import attrs


@attrs.frozen
class MetadataLoaded:
    repository: str
    packages: int
    from_cache: bool  # parsed pool came from the .solv cache
    seconds: float


@attrs.frozen
class Resolved:
    packages: int
    download_bytes: int
    seconds: float


@attrs.frozen
class FetchStarted:
    packages: int  # in the lock
    cached: int  # already in the cache
    download_packages: int
    download_bytes: int


@attrs.frozen
class DownloadProgress:
    package: str
    bytes: int  # bytes received since the previous event (negative: a retry discarded them)


@attrs.frozen
class PackageFetched:
    package: str
    path: Path
    size: int
    downloaded: bool  # False: it was a cache hit


@attrs.frozen
class FetchFinished:
    downloaded: int
    downloaded_bytes: int
    cached: int
    seconds: float


Event = (MetadataLoaded | Resolved | FetchStarted | DownloadProgress | PackageFetched
         | FetchFinished)

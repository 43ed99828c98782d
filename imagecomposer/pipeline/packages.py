"""The packages stage in one call, for the pipeline: resolve (or read the lock) → fetch.

``build`` resolves, writes the lock atomically and fetches; ``build --locked`` reads the lock
instead of resolving and fetches offline when the cache already holds every package, so a
locked rebuild needs no repository metadata at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs

from imagecomposer.cache.store import PackageCache
from imagecomposer.config.model import Config
from imagecomposer.families.registry import family, provider_for, request_for
from imagecomposer.families.request import PackageRequest
from imagecomposer.foundation.errors import LockError
from imagecomposer.foundation.events import Event
from imagecomposer.lock import Lock
from imagecomposer.resolver.resolution import Resolution
from imagecomposer.resolver.resolver import Resolver
from imagecomposer.spec.model import Spec


@attrs.frozen
class PackagesResult:
    lock: Lock
    lock_path: Path
    packages: dict[str, Path]  # name -> verified package file
    cache: PackageCache  # close() it after compose (removes a throwaway store)
    resolution: Resolution | None = None  # None when the lock was read (--locked)


def run_packages_stage(spec: Spec | PackageRequest, config: Config, *, lock_path: Path,
                       locked: bool = False, parallel: int | None = None,
                       use_package_cache: bool = True,
                       events: Callable[[Event], None] | None = None) -> PackagesResult:
    """Resolve ``spec``'s package request (or read ``lock_path`` when ``locked``) and fetch
    every package. ``use_package_cache=False``: a throwaway store."""
    request = request_for(spec, config)
    parallel = parallel or config.core.parallel
    cache = PackageCache(config, enabled=use_package_cache)
    try:
        resolution = None
        provider = None
        if locked:
            lock = Lock.read(lock_path)
            refuse_removed(lock, request)
        else:
            provider = provider_for(request, config, events=events)
            resolution = Resolver(config, events=events).resolve(request, provider=provider)
            lock = resolution.lock
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock.write(lock_path)
        offline = locked and not cache.missing(lock)
        paths = cache.fetch(lock, parallel=parallel, provider=provider, offline=offline,
                            events=events)
    except BaseException:
        cache.close()
        raise
    return PackagesResult(lock, lock_path, paths, cache, resolution)


def refuse_removed(lock: Lock, request: PackageRequest) -> None:
    """A lock that installs a package ``customizations.packages.remove`` removes is refused
    (``remove:`` acts at resolution only: nothing is purged from an installed tree)."""
    removed = family(lock.kind).removed(lock, request.remove)
    if removed:
        listed = ", ".join(f"{name} (remove: {entry})" for name, entry in sorted(removed.items()))
        raise LockError(f"the lock installs packages customizations.packages.remove removes: "
                        f"{listed}; resolve again without --locked, or drop them from remove:")

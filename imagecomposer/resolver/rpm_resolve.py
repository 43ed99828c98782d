"""Resolve an RPM-family spec to a :class:`~imagecomposer.resolver.lock.Lock`.

The RPM path end to end, usable on its own (``resolve_rpm``) until the family-generic
:class:`imagecomposer.resolver.Resolver` dispatches to the provider hooks it uses
(``load``, ``jobs``, ``request_jobs``, ``locked``, ``base_request``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs

from imagecomposer.config.model import Config
from imagecomposer.events import Resolved
from imagecomposer.providers.rpm.provider import RpmProvider
from imagecomposer.resolver.lock import Lock
from imagecomposer.resolver.rpm_jobs import (
    RpmRequest,
    build_jobs,
    dependency_names,
    excluded,
    new_pool,
    solve,
)
from imagecomposer.resolver.solvables import ordered
from imagecomposer.spec.model import Spec


def rpm_request(spec: Spec, provider: RpmProvider) -> RpmRequest:
    """The profile's base set (minus what ``remove:`` excludes) plus the spec's installs."""
    packages = spec.customizations.packages
    base = [n for n in provider.base_request() if excluded(n, packages.remove) is None]
    return RpmRequest(install=tuple(dict.fromkeys([*base, *packages.install])),
                      remove=packages.remove, recommends=packages.recommends)


def resolve_rpm(spec: Spec, config: Config, *, provider: RpmProvider | None = None,
                events: Callable[[Any], None] | None = None) -> Lock:
    """Load, solve, and return the lock (install order: :mod:`imagecomposer.resolver.order`)."""
    provider = provider or RpmProvider(spec, config, events=events)
    pool = new_pool(provider.arch)
    provider.load(pool)
    provider.jobs(pool)
    request = rpm_request(spec, provider)
    started = time.monotonic()
    transaction = solve(pool, build_jobs(pool, request), recommends=request.recommends,
                        excluded_names=provider.excluded_names)
    chosen, _ = ordered(pool, list(transaction.newsolvables()))
    names = {s.id: s.name for s in chosen}
    packages = tuple(attrs.evolve(provider.locked(s), depends=dependency_names(pool, s, names))
                     for s in chosen)
    if events is not None:
        events(Resolved(len(packages), sum(p.size for p in packages),
                        time.monotonic() - started))
    base = spec.image.base
    return Lock(os=base.os, version=base.version, arch=base.arch, kind="rpm",
                repositories=tuple(provider.repositories()), packages=packages,
                requested=request.install)

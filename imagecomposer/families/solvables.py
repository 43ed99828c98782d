"""Family-generic helpers that turn libsolv solvables into lock entries.

Both providers (deb, rpm) use these: the location and checksum of a package are stored by
libsolv in the same attributes whatever the metadata format was.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from imagecomposer.families.order import install_order
from imagecomposer.foundation.settings import PackageFamily
from imagecomposer.lock import LockedPackage


def sha256_of(solvable: Any) -> str:
    import solv

    chk = solvable.lookup_checksum(solv.SOLVABLE_CHECKSUM)
    if chk is None or chk.typestr() != "sha256":
        return ""
    return str(chk.hex())


def locked_package(solvable: Any, *, repository: str, base_url: str,
                   kind: PackageFamily, **extra: Any) -> LockedPackage:
    """A :class:`LockedPackage` for ``solvable``; ``extra`` sets family-specific fields."""
    import solv

    location, _ = solvable.lookup_location()
    size = solvable.lookup_num(solv.SOLVABLE_DOWNLOADSIZE) or 0
    return LockedPackage(
        name=solvable.name,
        version=solvable.evr,
        arch=solvable.arch,
        repository=repository,
        url=base_url.rstrip("/") + "/" + urllib.parse.quote(str(location).lstrip("/"),
                                                          safe="/+~"),
        sha256=sha256_of(solvable),
        size=int(size),
        kind=kind,
        **extra,
    )


def edges(pool: Any, s: Any, chosen: dict[int, str]) -> tuple[set[str], set[str]]:
    """Names of chosen packages that satisfy ``s``'s pre-requirements (deb Pre-Depends,
    rpm Requires(pre)) and its other requirements."""
    import solv

    found: tuple[set[str], set[str]] = (set(), set())
    for where, names in ((1, found[0]), (-1, found[1])):
        for dep in s.lookup_deparray(solv.SOLVABLE_REQUIRES, where):
            if dep.id == solv.SOLVABLE_PREREQMARKER:
                continue
            for provider in pool.whatprovides(dep.id):
                if provider.id in chosen and provider.id != s.id:
                    names.add(chosen[provider.id])
    return found


def ordered(pool: Any, solvables: list[Any]) -> tuple[list[Any], dict[str, tuple[str, ...]]]:
    """``solvables`` in the lock's install order (:mod:`imagecomposer.families.order`), and
    for each name the sorted names of the others it requires (the lock's ``depends``)."""
    chosen = {s.id: s.name for s in solvables}
    pre: dict[str, set[str]] = {}
    deps: dict[str, set[str]] = {}
    for s in solvables:
        pre[s.name], deps[s.name] = edges(pool, s, chosen)
    by_name = {s.name: s for s in solvables}
    requires = {n: tuple(sorted(pre[n] | deps[n])) for n in by_name}
    return [by_name[n] for n in install_order(by_name, pre, deps)], requires

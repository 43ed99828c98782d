"""Family-generic helpers that turn libsolv solvables into lock entries.

Both providers (deb, rpm) use these: the location and checksum of a package are stored by
libsolv in the same attributes whatever the metadata format was.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

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

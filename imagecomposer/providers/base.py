"""What every package provider (deb, rpm) offers the resolver and the cache.

A provider turns a spec's base OS and extra repositories into verified libsolv repos. It owns
everything family-specific: metadata formats and their signatures, OS profiles (package sets
behind ``base.type``), and package verification beyond the SHA256 the index promises.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from imagecomposer.resolver.lock import LockedPackage, LockedRepository


class Provider(Protocol):
    kind: Literal["deb", "rpm"]

    def repositories(self) -> Sequence[LockedRepository]:
        """The repositories this build draws from (base OS ones first, then the spec's)."""
        ...

    def load(self, pool: Any) -> list[Any]:
        """Fetch and verify every repository's metadata and add it to the ``solv.Pool``.

        Sets each repo's priority and allow-list; uses the ``.solv`` cache when the index
        hash is unchanged. Raises :class:`~imagecomposer.errors.RepositoryError` subclasses.
        """
        ...

    def base_request(self) -> Sequence[str]:
        """Package names the OS profile adds for ``image.base.type`` (kernel included)."""
        ...

    def verify_package(self, package: LockedPackage, path: Path) -> None:
        """Checks beyond the streamed SHA256 (e.g. an RPM header signature)."""
        ...

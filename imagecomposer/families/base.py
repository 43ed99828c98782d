"""What every package provider (deb, rpm) offers the resolver and the cache.

Each family's :meth:`~imagecomposer.families.family.Family.provider` makes one. A provider
turns a spec's base OS and extra repositories into verified libsolv repos. It owns
everything family-specific: metadata formats and their signatures, OS profiles (package sets
behind ``base.type``), and package verification beyond the SHA256 the index promises.

The resolver core (:mod:`imagecomposer.resolver`) and the package cache
(:mod:`imagecomposer.cache`) are family-generic; they call only what is declared here:

- ``kind`` names the provider's family (:mod:`imagecomposer.families.registry`), which
  makes the pool (its disttype); ``arch`` is the pool architecture in the family's spelling
  (amd64 for deb, x86_64 for rpm).
- ``load(pool)`` must run first; ``base_request()`` and ``jobs()`` may depend on the metadata
  it loaded (e.g. the deb Essential set, the Priority fields).
- ``jobs(pool)`` adds family semantics the solver lacks (rpm: ``remove:`` as dnf excludes);
  it returns ``solv.Job`` objects. ``solver_flags()`` sets the family's solver policy.
- ``remove_jobs(pool, install, remove)`` says what ``customizations.packages.remove`` means
  in the family (deb: the named packages are locked out; rpm: dnf excludes, already applied
  by ``jobs()``); ``annotate_problems(text)`` adds the family's notes to libsolv's
  explanation of a failed solve.
- ``preferences(pool, request, removed=, recommends=)`` is the family tool's own answer when
  libsolv's policy is not that tool's (deb: the apt model, an exact install set libsolv
  then checks); None when libsolv already is the tool's solver (rpm: dnf).
- ``locked(solvable)`` builds the lock entry of a chosen package (URL, SHA256, size and the
  family's extra fields); :func:`imagecomposer.families.solvables.locked_package` does the
  generic part.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from imagecomposer.families.preferences import Preferences
from imagecomposer.foundation.settings import PackageFamily
from imagecomposer.lock import LockedPackage, LockedRepository


class Provider(Protocol):
    @property
    def kind(self) -> PackageFamily:
        """The family's name (``deb``, ``rpm``): its entry in the family registry."""
        ...

    @property
    def arch(self) -> str:
        """The pool architecture in the family's spelling (amd64, x86_64)."""
        ...

    def repositories(self) -> Sequence[LockedRepository]:
        """The repositories this build draws from (base OS ones first, then the spec's)."""
        ...

    def load(self, pool: Any) -> list[Any]:
        """Fetch and verify every repository's metadata and add it to the ``solv.Pool``.

        Sets each repo's priority and allow-list; uses the ``.solv`` cache when the index
        hash is unchanged. Raises :class:`~imagecomposer.foundation.errors.RepositoryError`
        subclasses.
        """
        ...

    def base_request(self) -> Sequence[str]:
        """Package names the OS profile adds for ``image.base.type`` (kernel included)."""
        ...

    def jobs(self, pool: Any) -> list[Any]:
        """Family-specific solver jobs added to every request (after :meth:`load`)."""
        ...

    def solver_flags(self) -> dict[int, int]:
        """libsolv solver flags of the family's policy (``SOLVER_FLAG_*`` → value)."""
        ...

    def preferences(self, pool: Any, request: Sequence[str], *, removed: Sequence[str],
                    recommends: bool) -> Preferences | None:
        """The install set the family's own tool would choose (see the module doc)."""
        ...

    def request_jobs(self, pool: Any, text: str, how: int) -> list[Any]:
        """Solver jobs for one request string in the family's syntax (``name=version`` for
        deb, ``name-version`` for rpm; globs, ``>=``); raises PackageNotFound."""
        ...

    def remove_jobs(self, pool: Any, install: Sequence[str], remove: Sequence[str]
                    ) -> list[Any]:
        """Solver jobs for ``remove:`` (after :meth:`jobs`); raises DependencyError when a
        requested package is also removed, where the family refuses that."""
        ...

    def annotate_problems(self, text: str) -> str:
        """libsolv's explanation of a failed solve, with the family's notes added."""
        ...

    def locked(self, solvable: Any) -> LockedPackage:
        """The lock entry of a package the solver chose (after :meth:`load`)."""
        ...

    def verify_package(self, package: LockedPackage, path: Path) -> None:
        """Checks beyond the streamed SHA256 (e.g. an RPM header signature)."""
        ...

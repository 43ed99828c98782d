"""The family strategy: one class per package family (deb, rpm) owns what differs by family.

The pipeline, the resolver, the caches, the composer, the SBOM and ``inspect`` are
family-generic: where a step depends on the family they ask the family of the OS (or of the
lock) through :mod:`imagecomposer.families.registry` and call one of the methods below. So
adding a family (apk, pacman) means one subclass of :class:`Family` in its own package, its
registration, its name in ``foundation.settings.PackageFamily`` (what configuration, spec
and lock files are checked against) and its OS profiles; nothing outside the family modules
branches on the family's name (see docs/architecture.md, "Adding a family").

What a family owns, in build order:

- **validation**: :meth:`Family.check`, what the packages stage would refuse, found without
  the network (the OS profile, keyrings, mirrors, repository keys, the kernel package);
- **the request**: :meth:`Family.request` turns a spec into the
  :class:`~imagecomposer.families.request.PackageRequest` the packages stage hashes and
  resolves (the same rule for deb and rpm today);
- **the provider** (:meth:`Family.provider`): verified repository metadata as libsolv repos,
  the request syntax and solver jobs, what ``customizations.packages.remove`` means at
  resolution (:class:`~imagecomposer.families.base.Provider`); the pool's disttype
  (:meth:`Family.new_pool`); :meth:`Family.removed`, the same ``remove:`` rule applied to a
  lock given with ``build --locked``;
- **the package file**: its extension and file name (:meth:`Family.filename`);
- **installing** a lock into an empty tree with the family's tool (:meth:`Family.install`),
  its scripts seeing the build epoch as ``SOURCE_DATE_EPOCH``; in two phases when the spec
  has ``pre_install`` scripts: the family's bootstrap set first (:meth:`Family.bootstrap`),
  then the scripts, then the rest of the lock; what the family's tools leave
  that differs from build to build (:attr:`Family.leftovers`, removed after installation
  and configuration by :func:`imagecomposer.foundation.normalize.remove_leftovers`);
- **configuration hooks** on a :class:`TreeContext`: :meth:`Family.after_install` (first),
  :meth:`Family.configure_repositories` (the image's own repository configuration),
  :meth:`Family.before_initramfs`, :meth:`Family.finish` (last, after every file is written);
- **the installed-package database**: :meth:`Family.installed_packages` of a tree, the image
  paths it lives at (:attr:`Family.database_paths`, what ``inspect`` copies out of an image);
- **the SBOM rules**: package URLs (:meth:`Family.purl`), suppliers and licenses.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import attrs

from imagecomposer.config.model import Config
from imagecomposer.families.base import Provider
from imagecomposer.families.licenses import PackageLicense
from imagecomposer.families.request import PackageRequest, package_request
from imagecomposer.foundation.errors import Problem
from imagecomposer.foundation.events import Event, EventSink
from imagecomposer.foundation.settings import PackageFamily
from imagecomposer.lock import Lock, LockedPackage
from imagecomposer.spec.model import Spec


@attrs.frozen
class InstalledPackage:
    """One package as the image's package database records it."""

    name: str
    version: str
    arch: str
    maintainer: str | None = None
    license: str | None = None  # rpm's License tag (SPDX on current Fedora); None for dpkg
    source: str | None = None


def _no_events(_event: Event) -> None:
    return None


@attrs.frozen
class TreeContext:
    """What a configuration hook works on: the installed tree of ``lock`` being configured
    for ``spec`` (with the configuration stage's global configuration)."""

    tree: Path
    spec: Spec
    lock: Lock
    config: Config
    verity_root: bool = False  # the root filesystem is a dm-verity volume
    events: EventSink = attrs.field(default=_no_events, eq=False)

    @property
    def timeout(self) -> float | None:
        return self.config.core.timeout


def with_dependencies(lock: Lock, names: Iterable[str]) -> tuple[LockedPackage, ...]:
    """The packages of ``lock`` named in ``names`` and everything they depend on in the lock
    (transitively), in the lock's order."""
    by_name = {p.name: p for p in lock.packages}
    wanted = {name for name in names if name in by_name}
    todo = list(wanted)
    while todo:
        for dep in by_name[todo.pop()].depends:
            if dep in by_name and dep not in wanted:
                wanted.add(dep)
                todo.append(dep)
    return tuple(p for p in lock.packages if p.name in wanted)


def purl_part(text: str) -> str:
    """``text`` percent-encoded for a package URL."""
    return quote(text, safe=".-_~")


class Family(abc.ABC):
    """Everything one package family does differently; one instance per family, registered
    with :func:`imagecomposer.families.registry.register`."""

    # the name in configurations, locks and repositories: "deb", a settings.PackageFamily
    kind: ClassVar[PackageFamily]
    package_extension: ClassVar[str]  # the package file's extension: "deb"
    manager: ClassVar[str]  # the package manager named in reports: "dpkg"
    database: ClassVar[str]  # what error messages call its database: "dpkg status"
    # image paths of the installed-package database (files, or directories whose files
    # make it up), the first one found wins: what inspect copies out of an image
    database_paths: ClassVar[tuple[str, ...]]
    # image paths the family's tools leave that differ from build to build and that the
    # system does not need (logs with wall-clock times, previous databases): removed
    leftovers: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r})"

    # --- validation -----------------------------------------------------------------------

    def check(self, spec: Spec, config: Config) -> list[Problem]:
        """What the packages stage would stop at in ``spec`` under ``config`` that can be
        known without the network (the OS profile, the provider's keyring and mirror, the
        repositories' keys ...), each a positioned problem (helpers:
        :mod:`imagecomposer.families.checks`). None by default."""
        return []

    # --- the packages stage --------------------------------------------------------------

    def request(self, spec: Spec) -> PackageRequest:
        """The package request ``spec`` makes (what the packages stage hashes)."""
        return package_request(spec)

    @abc.abstractmethod
    def provider(self, request: PackageRequest, config: Config, *,
                 cache_dir: Path | None = None,
                 events: Callable[[Any], None] | None = None) -> Provider:
        """The provider of ``request``'s base OS and repositories."""

    @abc.abstractmethod
    def new_pool(self, arch: str) -> Any:
        """An empty ``solv.Pool`` with the family's disttype, for ``arch`` (the provider's)."""

    @abc.abstractmethod
    def removed(self, lock: Lock, remove: Sequence[str]) -> dict[str, str]:
        """The packages of ``lock`` that ``remove`` (``customizations.packages.remove``)
        keeps out of an image, each with the entry that does: the rule the provider's solver
        jobs apply at resolution, checked on a lock given with ``build --locked``."""

    def filename(self, package: LockedPackage) -> str:
        """The file name ``package`` is stored under in a download directory."""
        version = package.version.replace(":", "%3a")
        return f"{package.name}_{version}_{package.arch}.{self.package_extension}"

    # --- compose: installing and configuring ---------------------------------------------

    @abc.abstractmethod
    def install(self, lock: Lock, packages: Mapping[str, Path], tree: Path, *,
                timeout: float | None = None, events: EventSink | None = None,
                parallel: int = 1, epoch: int | None = None,
                pre_install: Callable[[Path], None] | None = None) -> None:
        """Install every package of ``lock`` (files in ``packages``, by name) into ``tree``,
        an empty or missing directory, with at most ``parallel`` processes at a time
        (``--parallel``); maintainer scripts or scriptlets see ``SOURCE_DATE_EPOCH`` =
        ``epoch`` (None: :func:`~imagecomposer.foundation.epoch.build_epoch`). The result may
        depend on the lock, the epoch and ``pre_install`` alone: the installed-tree cache is
        keyed by them.

        ``pre_install`` (the spec's pre_install scripts): called with ``tree`` once the
        bootstrap set (:meth:`bootstrap`) is installed, before the rest of the lock; None:
        the whole lock in one phase."""

    @abc.abstractmethod
    def bootstrap(self, lock: Lock, packages: Mapping[str, Path]) -> tuple[LockedPackage, ...]:
        """The packages of ``lock`` installed before the spec's pre_install scripts run (in
        the lock's order): what a script needs to run (a shell) and the family's base of
        every system, with their dependencies in the lock."""

    @staticmethod
    def phases(lock: Lock, first: Sequence[LockedPackage]) -> tuple[Lock, Lock]:
        """``lock`` split in two, ``first`` and the rest, each in the lock's order."""
        names = {p.name for p in first}
        return (attrs.evolve(lock, packages=tuple(p for p in lock.packages if p.name in names)),
                attrs.evolve(lock, packages=tuple(p for p in lock.packages
                                                  if p.name not in names)))

    def after_install(self, ctx: TreeContext) -> None:
        """First in the configuration stage, before any step enables or disables a unit."""
        return None  # nothing, unless the family needs it

    @abc.abstractmethod
    def configure_repositories(self, ctx: TreeContext) -> list[Path]:
        """The image's own repository configuration (the repositories it was built from, with
        their keys); the host paths written."""

    def before_initramfs(self, ctx: TreeContext) -> None:
        """After every configuration step and script, before the initramfs is built."""
        return None  # nothing, unless the family needs it

    def finish(self, ctx: TreeContext) -> None:
        """Last, after the bootloader and every file is written."""
        return None  # nothing, unless the family needs it

    # --- the installed-package database and the SBOM --------------------------------------

    @abc.abstractmethod
    def installed_packages(self, tree: Path) -> dict[str, InstalledPackage]:
        """What the package database in ``tree`` says is installed, by name (raises
        ExportError when it cannot be read)."""

    @abc.abstractmethod
    def purl(self, lock: Lock, package: LockedPackage) -> str:
        """The package URL of ``package`` (``pkg:deb/debian/bash@...``)."""

    def supplier(self, package: LockedPackage, installed: InstalledPackage) -> str | None:
        """Who supplies ``package``: the lock's maintainer, else the database's."""
        return package.maintainer or installed.maintainer

    @abc.abstractmethod
    def license(self, tree: Path, package: LockedPackage,
                installed: InstalledPackage) -> PackageLicense:
        """The license of the installed ``package`` as an SPDX expression."""

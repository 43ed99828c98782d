"""The lockfile: the exact package set a build installs, in install order.

Written by the packages stage, read by compose, the SBOM and ``build --locked``. The JSON
form is canonical (sorted keys, fixed separators) so its hash identifies the package set and
keys the installed-tree cache and the image cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import attrs
import cattrs

from imagecomposer.foundation import display
from imagecomposer.foundation.convert import CONVERTER
from imagecomposer.foundation.errors import LockError
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.foundation.settings import PackageFamily

LOCK_FORMAT = 1

converter = CONVERTER


@attrs.frozen
class SignedIndex:
    """The signed metadata file a repository's package list was verified with, as its
    family names it (deb: ``InRelease`` or ``Release``; rpm: ``repodata/repomd.xml``),
    relative to the repository's ``url``, and its SHA-256."""

    path: str
    sha256: str


@attrs.frozen
class LockedRepository:
    name: str
    url: str
    kind: PackageFamily
    suite: str | None = None
    components: tuple[str, ...] = ()
    trusted: bool = False
    # when its signed metadata was published, in seconds since 1970-01-01 UTC (the
    # Release file's Date:, repomd.xml's revision or timestamp); None: it has no such date
    date: int | None = None
    # the signed index the build used (None: no signed metadata, e.g. a local directory,
    # or a lock written before the field existed)
    signed_index: SignedIndex | None = None


@attrs.frozen
class LockedPackage:
    name: str
    version: str
    arch: str
    repository: str  # LockedRepository.name
    url: str  # absolute download URL (http(s):// or file://)
    sha256: str
    size: int
    kind: PackageFamily = "deb"
    essential: bool = False
    priority: str | None = None  # deb Priority field
    maintainer: str | None = None  # deb Maintainer / rpm Packager or Vendor
    source: str | None = None  # source package name
    depends: tuple[str, ...] = ()  # names of locked packages this one depends on (SBOM)

    @property
    def nevra(self) -> str:
        return f"{self.name}={self.version}:{self.arch}"


@attrs.frozen
class Lock:
    os: str
    version: str
    arch: str
    kind: PackageFamily
    repositories: tuple[LockedRepository, ...]
    packages: tuple[LockedPackage, ...]  # install order (imagecomposer.families.order)
    requested: tuple[str, ...] = ()  # the request as given (spec + profile package sets)
    format: int = LOCK_FORMAT

    def to_json(self) -> str:
        return json.dumps(converter.unstructure(self), indent=1, sort_keys=True) + "\n"

    def __repr__(self) -> str:
        """``Lock(os='debian 12', arch='amd64', kind='deb', packages=180, ...)``."""
        return display.call("Lock", os=f"{self.os} {self.version}", arch=self.arch,
                            kind=self.kind, packages=len(self.packages),
                            repositories=len(self.repositories), hash=self.hash[:12])

    def _repr_html_(self) -> str:  # Jupyter: every package, in install order
        size = sum(p.size for p in self.packages)
        title = (f"Lock {self.os} {self.version} {self.arch} ({self.kind}): "
                 f"{len(self.packages)} packages, {display.size(size)}, "
                 f"hash {self.hash[:12]}")
        rows = [(i, p.name, p.version, p.arch, p.repository, display.size(p.size))
                for i, p in enumerate(self.packages, 1)]
        return display.html_grid(("#", "package", "version", "arch", "repository", "size"),
                                 rows, title=title, right=(0, 5))

    @functools.cached_property
    def hash(self) -> str:
        """SHA256 of the canonical JSON form: identifies the package set (computed once per
        lock: a build asks for it 7 times, each a serialisation of every package)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @property
    def source_date(self) -> int | None:
        """The newest date of the repositories' metadata: the build epoch when
        ``SOURCE_DATE_EPOCH`` is not set (:func:`imagecomposer.foundation.epoch.choose_epoch`).
        None when no repository has a date (local directories, bare flat repositories)."""
        dates = [r.date for r in self.repositories if r.date is not None]
        return max(dates) if dates else None

    def package(self, name: str) -> LockedPackage | None:
        return next((p for p in self.packages if p.name == name), None)

    def write(self, path: Path) -> None:
        """Write atomically: a reader never sees a half-written lock."""
        atomic_write(path, self.to_json())

    @classmethod
    def from_json(cls, text: str, *, source: str = "<lock>") -> Lock:
        try:
            data: Any = json.loads(text)
            if data.get("format") != LOCK_FORMAT:
                raise LockError(f"{source}: unsupported lock format {data.get('format')!r}")
            return converter.structure(data, cls)
        except (ValueError, cattrs.BaseValidationError, AttributeError) as exc:
            raise LockError(f"{source}: not a valid imagecomposer lock: {exc}") from exc

    @classmethod
    def read(cls, path: Path) -> Lock:
        try:
            text = path.read_text()
        except OSError as exc:
            raise LockError(f"cannot read lock {path}: {exc.strerror}") from exc
        return cls.from_json(text, source=str(path))

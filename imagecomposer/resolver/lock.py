"""The lockfile: the exact package set a build installs, in install order.

Written by the packages stage, read by compose, the SBOM and ``build --locked``. The JSON
form is canonical (sorted keys, fixed separators) so its hash identifies the package set and
keys the installed-tree cache and the image cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs

from imagecomposer.errors import LockError
from imagecomposer.fsutil import atomic_write

LOCK_FORMAT = 1

converter = cattrs.Converter(forbid_extra_keys=True)


@attrs.frozen
class LockedRepository:
    name: str
    url: str
    kind: Literal["deb", "rpm"]
    suite: str | None = None
    components: tuple[str, ...] = ()
    trusted: bool = False


@attrs.frozen
class LockedPackage:
    name: str
    version: str
    arch: str
    repository: str  # LockedRepository.name
    url: str  # absolute download URL (http(s):// or file://)
    sha256: str
    size: int
    kind: Literal["deb", "rpm"] = "deb"
    essential: bool = False
    priority: str | None = None  # deb Priority field
    maintainer: str | None = None  # deb Maintainer / rpm Packager or Vendor
    source: str | None = None  # source package name
    depends: tuple[str, ...] = ()  # names of locked packages this one depends on (SBOM)

    @property
    def nevra(self) -> str:
        return f"{self.name}={self.version}:{self.arch}"

    @property
    def filename(self) -> str:
        """The file name the package is stored under in a download directory."""
        ext = "rpm" if self.kind == "rpm" else "deb"
        version = self.version.replace(":", "%3a")
        return f"{self.name}_{version}_{self.arch}.{ext}"


@attrs.frozen
class Lock:
    os: str
    version: str
    arch: str
    kind: Literal["deb", "rpm"]
    repositories: tuple[LockedRepository, ...]
    packages: tuple[LockedPackage, ...]  # install order (imagecomposer.resolver.order)
    requested: tuple[str, ...] = ()  # the request as given (spec + profile package sets)
    format: int = LOCK_FORMAT

    def to_json(self) -> str:
        return json.dumps(converter.unstructure(self), indent=1, sort_keys=True) + "\n"

    @property
    def hash(self) -> str:
        """SHA256 of the canonical JSON form: identifies the package set."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

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

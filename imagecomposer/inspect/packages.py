"""Installed packages, read offline: the dpkg ``status`` file, or the rpm database copied out
of the image and queried with the host's rpm (``--root`` on the copy, the image's own
dbpath and backend: :func:`imagecomposer.export.sbom.pkgdb.rpm_installed`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from imagecomposer.compose.rpm_install import DBPATHS
from imagecomposer.export.sbom.pkgdb import InstalledPackage, parse_dpkg_status, rpm_installed
from imagecomposer.foundation.errors import ExportError, InspectError
from imagecomposer.inspect.facts import View
from imagecomposer.inspect.report import Package, Packages

DPKG_STATUS = "/var/lib/dpkg/status"


def _packages(manager: str, found: dict[str, InstalledPackage]) -> Packages:
    items = tuple(Package(p.name, p.version, p.arch, p.source)
                  for p in sorted(found.values(), key=lambda p: (p.name, p.arch)))
    return Packages(manager, len(items), items)


def installed(view: View, scratch: Path) -> Packages:
    status = view.read_many([DPKG_STATUS])[DPKG_STATUS]
    if status is not None:
        return _packages("dpkg", parse_dpkg_status(status.decode("utf-8", "replace")))
    listings = view.listdir_many(DBPATHS)
    for dbpath in DBPATHS:
        files = [e for e in listings[dbpath] or () if e.kind == "file"]
        if not files:
            continue
        contents = view.read_many([f"{dbpath}/{e.name}" for e in files])
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            target = Path(tmp) / dbpath.lstrip("/")
            target.mkdir(parents=True)
            for path, data in contents.items():
                if data is not None:
                    (target / path.rsplit("/", 1)[1]).write_bytes(data)
            try:
                return _packages("rpm", rpm_installed(Path(tmp)))
            except ExportError as exc:
                raise InspectError(f"cannot read the rpm database of the image: {exc}") from None
    return Packages(None, 0, ())

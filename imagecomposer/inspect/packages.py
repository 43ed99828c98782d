"""Installed packages, read offline: the package database of each registered family (dpkg's
``status`` file, the rpm database...) copied out of the image into scratch space and read
there by the family (:meth:`~imagecomposer.families.family.Family.installed_packages`; for
rpm the host's rpm with ``--root`` on the copy, the image's own dbpath and backend)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from imagecomposer.families.family import InstalledPackage
from imagecomposer.families.registry import families
from imagecomposer.foundation.errors import ExportError, InspectError
from imagecomposer.inspect.facts import View
from imagecomposer.inspect.report import Package, Packages


def _packages(manager: str, found: dict[str, InstalledPackage]) -> Packages:
    items = tuple(Package(p.name, p.version, p.arch, p.source)
                  for p in sorted(found.values(), key=lambda p: (p.name, p.arch)))
    return Packages(manager, len(items), items)


def _copy_out(view: View, paths: Sequence[str], scratch: Path) -> bool:
    """Copy the first of the image ``paths`` that exists (a file, or a directory's files)
    to the same path under ``scratch``; whether one did."""
    files = view.read_many(paths)
    listings = view.listdir_many([p for p in paths if files[p] is None])
    for path in paths:
        target = scratch / path.lstrip("/")
        data = files[path]
        if data is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            return True
        names = [e.name for e in listings.get(path) or () if e.kind == "file"]
        if not names:
            continue
        contents = view.read_many([f"{path}/{name}" for name in names])
        target.mkdir(parents=True)
        for name in names:
            content = contents[f"{path}/{name}"]
            if content is not None:
                (target / name).write_bytes(content)
        return True
    return False


def installed(view: View, scratch: Path) -> Packages:
    for family in families():
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            if not _copy_out(view, family.database_paths, Path(tmp)):
                continue
            try:
                return _packages(family.manager, family.installed_packages(Path(tmp)))
            except ExportError as exc:
                raise InspectError(f"cannot read the {family.manager} database of the image: "
                                   f"{exc}") from None
    return Packages(None, 0, ())

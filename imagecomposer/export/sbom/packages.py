"""The SBOM's package list: the lock, checked against what the tree really has installed.

The lock says what the resolver chose (with download URL and SHA256); the package database
says what ended up in the image. Both must agree: a package only in the lock did not get
installed (or was removed by a script); a package only in the database was installed
behind the resolver's back (a script) and has no provenance. Either is an ExportError that
names every such package.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import attrs

from imagecomposer.families.family import InstalledPackage
from imagecomposer.families.licenses import PackageLicense
from imagecomposer.families.registry import family
from imagecomposer.foundation.errors import ExportError
from imagecomposer.lock import Lock


@attrs.frozen
class SbomPackage:
    name: str
    version: str
    arch: str
    kind: str  # the package family: deb, rpm
    purl: str
    supplier: str | None
    download_url: str
    sha256: str
    license: PackageLicense
    depends: tuple[str, ...]  # names of other SbomPackages

    @property
    def ref(self) -> str:
        """A stable identifier usable as SPDXID suffix and CycloneDX bom-ref."""
        short = hashlib.sha256(self.purl.encode()).hexdigest()[:8]
        safe = "".join(c if c.isalnum() or c in ".-" else "-" for c in self.name)
        return f"{self.kind}-{safe}-{short}"


def _normal_version(version: str) -> str:
    return version.removeprefix("0:")


def cross_check(lock: Lock, installed: dict[str, InstalledPackage], database: str) -> None:
    locked = {p.name: p for p in lock.packages}
    problems = [f"package '{n}' is in the lock but not installed ({database})"
                for n in sorted(set(locked) - set(installed))]
    problems += [f"package '{n}' is installed ({database}) but not in the lock "
                 "(installed by a script?)" for n in sorted(set(installed) - set(locked))]
    for name in sorted(set(locked) & set(installed)):
        want, have = locked[name], installed[name]
        if _normal_version(want.version) != _normal_version(have.version):
            problems.append(f"package '{name}': lock has version {want.version}, "
                            f"{database} has {have.version}")
    if problems:
        raise ExportError("SBOM: the lock and the image's package database disagree:\n  "
                          + "\n  ".join(problems))


def collect(lock: Lock, tree: Path) -> tuple[SbomPackage, ...]:
    """The SBOM packages of ``lock`` as installed in ``tree`` (cross-checked); package URLs,
    suppliers and licenses by the lock's family's rules."""
    rules = family(lock.kind)
    installed = rules.installed_packages(tree)
    cross_check(lock, installed, rules.database)
    names = {p.name for p in lock.packages}
    result = []
    for pkg in lock.packages:
        have = installed[pkg.name]
        result.append(SbomPackage(
            name=pkg.name, version=pkg.version, arch=pkg.arch, kind=pkg.kind,
            purl=rules.purl(lock, pkg), supplier=rules.supplier(pkg, have),
            download_url=pkg.url, sha256=pkg.sha256, license=rules.license(tree, pkg, have),
            depends=tuple(sorted({d for d in pkg.depends if d in names and d != pkg.name}))))
    return tuple(result)

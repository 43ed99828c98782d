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
from urllib.parse import quote

import attrs

from imagecomposer.export.sbom.licenses import PackageLicense, package_license, spdx_or_ref
from imagecomposer.export.sbom.pkgdb import InstalledPackage, installed_packages
from imagecomposer.foundation.errors import ExportError
from imagecomposer.lock import Lock, LockedPackage


@attrs.frozen
class SbomPackage:
    name: str
    version: str
    arch: str
    kind: str  # deb | rpm
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


def _enc(text: str) -> str:
    return quote(text, safe=".-_~")


def purl(lock: Lock, pkg: LockedPackage) -> str:
    """Package URL: ``pkg:deb/debian/bash@5.2.15-2%2Bb7?arch=amd64&distro=debian-12``."""
    namespace = _enc(lock.os.lower())
    distro = _enc(f"{lock.os.lower()}-{lock.version}")
    if pkg.kind == "rpm":
        epoch, sep, rest = pkg.version.partition(":")
        version, qualifiers = (rest, f"arch={_enc(pkg.arch)}&distro={distro}&epoch={epoch}") \
            if sep else (pkg.version, f"arch={_enc(pkg.arch)}&distro={distro}")
        return f"pkg:rpm/{namespace}/{_enc(pkg.name)}@{_enc(version)}?{qualifiers}"
    return (f"pkg:deb/{namespace}/{_enc(pkg.name)}@{_enc(pkg.version)}"
            f"?arch={_enc(pkg.arch)}&distro={distro}")


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
    """The SBOM packages of ``lock`` as installed in ``tree`` (cross-checked)."""
    installed = installed_packages(tree, lock.kind)
    cross_check(lock, installed, "dpkg status" if lock.kind == "deb" else "rpmdb")
    names = {p.name for p in lock.packages}
    result = []
    for pkg in lock.packages:
        have = installed[pkg.name]
        if lock.kind == "deb":
            license_ = package_license(tree, pkg.name)
        else:
            license_ = spdx_or_ref(have.license or "")
        result.append(SbomPackage(
            name=pkg.name, version=pkg.version, arch=pkg.arch, kind=pkg.kind,
            purl=purl(lock, pkg), supplier=pkg.maintainer or have.maintainer,
            download_url=pkg.url, sha256=pkg.sha256, license=license_,
            depends=tuple(sorted({d for d in pkg.depends if d in names and d != pkg.name}))))
    return tuple(result)

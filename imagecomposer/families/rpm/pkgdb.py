"""The rpm database inside a root tree: what is really installed.

``rpm --root TREE --dbpath D -qa`` through the runner (the rpmdb format is rpm's business).
``D`` is where the image keeps its database (:func:`~imagecomposer.families.rpm.install.
find_rpmdb`): Debian's rpm would otherwise look in ``/root/.rpmdb`` of the tree and find
nothing.
"""

from __future__ import annotations

from pathlib import Path

from imagecomposer.families.family import InstalledPackage
from imagecomposer.families.rpm.install import find_rpmdb
from imagecomposer.foundation.errors import CommandError, ExportError
from imagecomposer.foundation.runner import require, run

_RPM_QF = "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{PACKAGER}\\t%{LICENSE}\\n"


def rpm_query(tree: Path) -> list[str]:
    """``rpm`` aimed at the database of ``tree``: the image's own location and backend when
    the tree has one where rpm distributions keep it, else the host rpm's default."""

    rpm = [require("rpm", "rpm"), "--root", str(tree.resolve())]
    found = find_rpmdb(tree)
    if found is not None:
        dbpath, backend = found
        rpm += ["--dbpath", dbpath, "--define", f"_db_backend {backend}"]
    return rpm


def rpm_installed(tree: Path) -> dict[str, InstalledPackage]:
    try:
        out = run([*rpm_query(tree), "-qa", "--qf", _RPM_QF], capture=True,
                  what="rpm database query").stdout.decode("utf-8", "replace")
    except CommandError as exc:
        raise ExportError(f"cannot read the rpm database in {tree}: {exc}") from None
    found: dict[str, InstalledPackage] = {}
    for line in out.splitlines():
        name, epoch, vr, arch, packager, license_ = (line.split("\t") + [""] * 6)[:6]
        if name == "gpg-pubkey":  # imported signing keys, not software
            continue
        version = vr if epoch in ("", "0") else f"{epoch}:{vr}"
        found[name] = InstalledPackage(name, version, arch,
                                       None if packager == "(none)" else packager,
                                       None if license_ == "(none)" else license_)
    return found

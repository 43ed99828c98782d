"""The package database inside a root tree: what is really installed.

dpkg: ``var/lib/dpkg/status`` (deb822 paragraphs; only ``install ok installed`` counts).
rpm: ``rpm --root TREE --dbpath D -qa`` through the runner (the rpmdb format is rpm's
business). ``D`` is where the image keeps its database (``find_rpmdb``): Debian's rpm would
otherwise look in ``/root/.rpmdb`` of the tree and find nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs

from imagecomposer.compose.rpm_install import find_rpmdb
from imagecomposer.foundation.errors import CommandError, ExportError, ImagePathError
from imagecomposer.foundation.rootfs import Root
from imagecomposer.foundation.runner import require, run


@attrs.frozen
class InstalledPackage:
    name: str
    version: str
    arch: str
    maintainer: str | None = None
    license: str | None = None  # rpm's License tag (SPDX on current Fedora); None for dpkg
    source: str | None = None


def deb822_paragraphs(text: str) -> Iterator[dict[str, str]]:
    """Paragraphs of a deb822 file as ``{Field: value}``; continuation lines are joined
    with newlines (as in the file, minus the leading space, '.' meaning an empty line)."""
    fields: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif line.startswith("#"):
            continue
        elif line[0] in " \t":
            if last is not None:
                cont = line[1:]
                fields[last] += "\n" + ("" if cont.strip() == "." else cont)
        else:
            name, sep, value = line.partition(":")
            if not sep:
                continue
            last = name.strip()
            fields[last] = value.strip()
    if fields:
        yield fields


def dpkg_installed(tree: Path) -> dict[str, InstalledPackage]:
    status = "/var/lib/dpkg/status"
    try:
        with Root(tree) as root:
            text = root.read_bytes(status).decode("utf-8", errors="replace")
    except ImagePathError as exc:
        raise ExportError(f"cannot read the dpkg database: {exc}") from None
    return parse_dpkg_status(text)


def parse_dpkg_status(text: str) -> dict[str, InstalledPackage]:
    """The installed packages of a dpkg ``status`` file's text (also read out of an image
    by :mod:`imagecomposer.inspect`)."""
    found: dict[str, InstalledPackage] = {}
    for para in deb822_paragraphs(text):
        if para.get("Status", "").split()[-1:] != ["installed"]:
            continue
        source = para.get("Source", "").split(" ")[0] or None
        pkg = InstalledPackage(para["Package"], para.get("Version", ""),
                               para.get("Architecture", ""), para.get("Maintainer"),
                               None, source)
        found[pkg.name] = pkg
    return found


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


def installed_packages(tree: Path, kind: str) -> dict[str, InstalledPackage]:
    if kind == "deb":
        return dpkg_installed(tree)
    if kind == "rpm":
        return rpm_installed(tree)
    raise ExportError(f"unknown package kind {kind!r}")

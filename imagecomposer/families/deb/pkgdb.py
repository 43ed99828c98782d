"""dpkg's database inside a root tree: what is really installed.

``var/lib/dpkg/status`` (deb822 paragraphs; only ``install ok installed`` counts), read
through :class:`~imagecomposer.foundation.rootfs.Root`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imagecomposer.families.family import InstalledPackage
from imagecomposer.foundation.errors import ExportError, ImagePathError
from imagecomposer.foundation.rootfs import Root

DPKG_STATUS = "/var/lib/dpkg/status"


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
    try:
        with Root(tree) as root:
            text = root.read_bytes(DPKG_STATUS).decode("utf-8", errors="replace")
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

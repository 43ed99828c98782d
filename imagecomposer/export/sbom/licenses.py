"""Licenses from Debian's machine-readable copyright files (DEP-5) as SPDX expressions.

DEP-5 short names mostly predate SPDX (``GPL-2+``, ``Expat``, ``BSD-3-clause``). Names in
the table below, the DEP-5 standard short names, map to their SPDX identifiers; anything
else becomes ``LicenseRef-<name>`` with the license text from the copyright file, so the
SBOM stays valid and honest. A package without a machine-readable file gets NOASSERTION.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from imagecomposer.export.sbom.pkgdb import deb822_paragraphs
from imagecomposer.foundation.errors import ImagePathError
from imagecomposer.foundation.rootfs import Root

NOASSERTION = "NOASSERTION"

# DEP-5 short name (lower case) -> SPDX identifier. Versioned GNU families are handled by
# _gnu() below (GPL-2+ -> GPL-2.0-or-later).
_DIRECT = {
    "apache-1.0": "Apache-1.0", "apache-1.1": "Apache-1.1", "apache-2.0": "Apache-2.0",
    "artistic-1.0": "Artistic-1.0", "artistic-2.0": "Artistic-2.0",
    "bsd-2-clause": "BSD-2-Clause", "bsd-3-clause": "BSD-3-Clause",
    "bsd-4-clause": "BSD-4-Clause", "isc": "ISC", "expat": "MIT", "mit": "MIT",
    "zlib": "Zlib", "cc0-1.0": "CC0-1.0", "cc-by-3.0": "CC-BY-3.0", "cc-by-4.0": "CC-BY-4.0",
    "cc-by-sa-3.0": "CC-BY-SA-3.0", "cc-by-sa-4.0": "CC-BY-SA-4.0",
    "mpl-1.1": "MPL-1.1", "mpl-2.0": "MPL-2.0", "epl-1.0": "EPL-1.0", "epl-2.0": "EPL-2.0",
    "cddl-1.0": "CDDL-1.0", "python-2.0": "Python-2.0", "psf-2": "PSF-2.0",
    "zope-2.1": "ZPL-2.1", "w3c": "W3C", "openssl": "OpenSSL", "curl": "curl",
    "x11": "X11", "bsl-1.0": "BSL-1.0", "unicode-dfs-2016": "Unicode-DFS-2016",
    "fsfap": "FSFAP", "fsful": "FSFUL", "fsfullr": "FSFULLR", "ssleay": "SSLeay",
    "lppl-1.3c": "LPPL-1.3c", "ofl-1.1": "OFL-1.1", "wtfpl": "WTFPL", "0bsd": "0BSD",
    "unlicense": "Unlicense", "beerware": "Beerware", "sleepycat": "Sleepycat",
}
_GNU = {"gpl": "GPL", "lgpl": "LGPL", "agpl": "AGPL", "gfdl": "GFDL"}
_GNU_VERSIONS = {"GPL": ("1.0", "2.0", "3.0"), "LGPL": ("2.0", "2.1", "3.0"),
                 "AGPL": ("1.0", "3.0"), "GFDL": ("1.1", "1.2", "1.3")}


def _gnu(name: str) -> str | None:
    match = re.fullmatch(r"(a?gpl|lgpl|gfdl)-(\d)(?:\.(\d))?(\+)?", name)
    if match is None:
        return None
    family = _GNU[match[1]]
    version = f"{match[2]}.{match[3] or '0'}"
    if version not in _GNU_VERSIONS[family]:
        return None
    return f"{family}-{version}-{'or-later' if match[4] else 'only'}"


def spdx_id(short_name: str) -> str | None:
    """The SPDX identifier of one DEP-5 short name, or None."""
    name = short_name.strip().lower()
    return _DIRECT.get(name) or _gnu(name)


def license_ref(short_name: str) -> str:
    return "LicenseRef-" + (re.sub(r"[^A-Za-z0-9.-]+", "-", short_name.strip()).strip("-")
                            or "unknown")


@attrs.frozen
class PackageLicense:
    expression: str  # SPDX license expression, or NOASSERTION
    extracted: tuple[tuple[str, str], ...] = ()  # (LicenseRef-x, text) used by expression


def _convert(dep5: str, texts: dict[str, str],
             refs: dict[str, str]) -> str:
    """One DEP-5 ``License:`` first line → SPDX expression, collecting LicenseRefs."""
    dep5 = dep5.strip()
    if "," in dep5 or " with " in dep5.lower():
        # exceptions and comma precedence: keep the whole statement as one reference
        ref = license_ref(dep5)
        refs[ref] = texts.get(dep5, dep5)
        return ref
    parts = re.split(r"\s+(or|and)\s+", dep5, flags=re.IGNORECASE)
    out: list[str] = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part.upper())
            continue
        found = spdx_id(part)
        if found is None:
            found = license_ref(part)
            refs[found] = texts.get(part, f"License '{part}' as named in the Debian "
                                          "copyright file.")
        out.append(found)
    expression = " ".join(out)
    return f"({expression})" if len(out) > 1 else expression


def dep5_license(text: str) -> PackageLicense:
    """The license of a machine-readable copyright file: the AND of the distinct licenses
    of its Files paragraphs (every file's license applies to the package as a whole)."""
    paragraphs = list(deb822_paragraphs(text))
    if not paragraphs or "copyright-format" not in paragraphs[0].get("Format", ""):
        return PackageLicense(NOASSERTION)
    texts: dict[str, str] = {}
    for para in paragraphs:
        if "License" in para and "Files" not in para:  # stand-alone license paragraph
            first, _, body = para["License"].partition("\n")
            if body.strip():
                texts[first.strip()] = body.strip()
    refs: dict[str, str] = {}
    expressions: list[str] = []
    for para in paragraphs:
        if "Files" not in para or "License" not in para:
            continue
        first, _, body = para["License"].partition("\n")
        if body.strip():
            texts.setdefault(first.strip(), body.strip())
        expression = _convert(first, texts, refs)
        if expression not in expressions:
            expressions.append(expression)
    if not expressions:
        return PackageLicense(NOASSERTION)
    return PackageLicense(" AND ".join(expressions), tuple(sorted(refs.items())))


def package_license(tree: Path, package: str) -> PackageLicense:
    """License of an installed deb package from ``/usr/share/doc/<package>/copyright``
    (symlinks followed inside the tree only: never a host file)."""
    copyright_file = f"/usr/share/doc/{package}/copyright"
    try:
        with Root(tree) as root:
            if "/" in package or not root.is_file(copyright_file):
                return PackageLicense(NOASSERTION)
            text = root.read_bytes(copyright_file).decode("utf-8", errors="replace")
    except ImagePathError:
        return PackageLicense(NOASSERTION)
    return dep5_license(text)


def _known_ids() -> frozenset[str]:
    ids = set(_DIRECT.values())
    for family, versions in _GNU_VERSIONS.items():
        ids.update(f"{family}-{v}-{s}" for v in versions for s in ("only", "or-later"))
    return frozenset(ids)


KNOWN_IDS = _known_ids()


def spdx_or_ref(expression: str) -> PackageLicense:
    """An rpm License tag: kept when every identifier in it is one this module knows as
    SPDX, else one LicenseRef holding the original text (old Fedora tags like GPLv2+)."""
    if not expression.strip():
        return PackageLicense(NOASSERTION)
    tokens = [t for t in re.split(r"[\s()]+", expression) if t]
    if all(t.upper() in ("AND", "OR", "WITH") or t in KNOWN_IDS for t in tokens):
        return PackageLicense(expression.strip())
    ref = license_ref(expression)
    return PackageLicense(ref, ((ref, expression.strip()),))

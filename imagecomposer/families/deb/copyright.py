"""Licenses from Debian's machine-readable copyright files (DEP-5) as SPDX expressions.

``/usr/share/doc/<package>/copyright``: the AND of the distinct licenses of its Files
paragraphs; short names map through :mod:`imagecomposer.families.licenses`, anything else
becomes a ``LicenseRef-`` with the license text of the file. A package without a
machine-readable file gets NOASSERTION.
"""

from __future__ import annotations

import re
from pathlib import Path

from imagecomposer.families.deb.pkgdb import deb822_paragraphs
from imagecomposer.families.licenses import NOASSERTION, PackageLicense, license_ref, spdx_id
from imagecomposer.foundation.errors import ImagePathError
from imagecomposer.foundation.rootfs import Root


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

"""Package licenses as SPDX expressions, for the SBOMs.

A family says where a package's license comes from (Debian: the machine-readable copyright
file, :mod:`imagecomposer.families.deb.copyright`; rpm: the License tag,
:func:`spdx_or_ref`); this module maps short names to SPDX identifiers. DEP-5 short names
mostly predate SPDX (``GPL-2+``, ``Expat``, ``BSD-3-clause``). Names in the table below, the
DEP-5 standard short names, map to their SPDX identifiers; anything else becomes
``LicenseRef-<name>`` with the license text, so the SBOM stays valid and honest. A package
whose license is unknown gets NOASSERTION.
"""

from __future__ import annotations

import re

import attrs

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

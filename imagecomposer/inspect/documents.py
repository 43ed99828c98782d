"""Package lists from documents: SPDX and CycloneDX SBOMs (ours or other tools'), and our
lockfiles. ``compare`` compares these as it compares images' package databases."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from imagecomposer.foundation.errors import InspectError
from imagecomposer.inspect.report import Package


def document_kind(data: Any) -> str:
    """spdx, cyclonedx, lock, or unknown."""
    if not isinstance(data, Mapping):
        return "unknown"
    if "spdxVersion" in data:
        return "spdx"
    if data.get("bomFormat") == "CycloneDX":
        return "cyclonedx"
    if "packages" in data and "format" in data and "requested" in data:
        return "lock"
    return "unknown"


def _from_purl(purl: str) -> Package | None:
    # pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12
    if not purl.startswith("pkg:"):
        return None
    body, _, query = purl[4:].partition("?")
    body = body.split("#", 1)[0]
    path, _, version = body.partition("@")
    name = unquote(path.rsplit("/", 1)[-1])
    arch = parse_qs(query).get("arch", [""])[0]
    return Package(name, unquote(version), arch)


def _purl_of(item: Mapping[str, Any]) -> str | None:
    if isinstance(item.get("purl"), str):
        return str(item["purl"])
    for ref in item.get("externalRefs", ()) or ():
        if isinstance(ref, Mapping) and ref.get("referenceType") == "purl":
            return str(ref.get("referenceLocator"))
    return None


def document_packages(data: Any) -> tuple[str, tuple[Package, ...]]:
    kind = document_kind(data)
    items: list[Package] = []
    if kind == "lock":
        items = [Package(p["name"], p["version"], p.get("arch", ""), p.get("source"))
                 for p in data["packages"]]
    elif kind in ("spdx", "cyclonedx"):
        entries = data.get("packages" if kind == "spdx" else "components", ()) or ()
        for entry in entries:
            if not isinstance(entry, Mapping):
                continue
            if entry.get("primaryPackagePurpose") == "OPERATING-SYSTEM" or \
                    entry.get("type") == "operating-system":
                continue
            purl = _purl_of(entry)
            package = _from_purl(purl) if purl else None
            if package is None:
                package = Package(str(entry.get("name", "")),
                                  str(entry.get("versionInfo", entry.get("version", ""))), "")
            items.append(package)
    return kind, tuple(sorted(items, key=lambda p: (p.name, p.arch, p.version)))


def load_document(path: Path) -> tuple[str, tuple[Package, ...]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InspectError(f"cannot read {path}: {exc}") from None
    kind, packages = document_packages(data)
    if kind == "unknown":
        raise InspectError(f"{path} is neither an SPDX or CycloneDX SBOM nor an imagecomposer "
                           "lock")
    return kind, packages


def is_json_document(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b"{")

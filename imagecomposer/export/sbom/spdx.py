"""SPDX 2.3 JSON: the image as the described package, every OS package CONTAINed in it,
DEPENDS_ON relationships from the resolution."""

from __future__ import annotations

from typing import Any

from imagecomposer.export.sbom.common import TOOL, ImageInfo, content_id, created, stable_uuid
from imagecomposer.export.sbom.packages import SbomPackage
from imagecomposer.families.licenses import NOASSERTION

IMAGE_ID = "SPDXRef-Image"


def _supplier(text: str | None) -> str:
    if not text:
        return NOASSERTION
    name, _, email = text.partition("<")
    email = email.rstrip(">").strip()
    name = name.strip().replace("(", "[").replace(")", "]") or email
    return f"Organization: {name} ({email})" if email else f"Organization: {name}"


def _download(url: str) -> str:
    # SPDX accepts VCS and network URLs; a local file:// repository is not a location
    return url if url.startswith(("http://", "https://", "ftp://")) else NOASSERTION


def _package(pkg: SbomPackage) -> dict[str, Any]:
    return {
        "SPDXID": f"SPDXRef-Package-{pkg.ref}",
        "name": pkg.name,
        "versionInfo": pkg.version,
        "supplier": _supplier(pkg.supplier),
        "downloadLocation": _download(pkg.download_url),
        "filesAnalyzed": False,
        "checksums": [{"algorithm": "SHA256", "checksumValue": pkg.sha256}],
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": pkg.license.expression,
        "copyrightText": NOASSERTION,
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": pkg.purl}],
        "comment": f"architecture: {pkg.arch}",
    }


def spdx_document(image: ImageInfo, packages: tuple[SbomPackage, ...],
                  lock_hash: str, *, epoch: int | None = None) -> dict[str, Any]:
    content = content_id(image, packages, lock_hash)
    root: dict[str, Any] = {
        "SPDXID": IMAGE_ID,
        "name": image.name,
        "versionInfo": image.version,
        "supplier": NOASSERTION,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
    }
    if image.sha256:
        root["checksums"] = [{"algorithm": "SHA256", "checksumValue": image.sha256}]
    if image.file_name:
        root["packageFileName"] = image.file_name
    by_name = {p.name: p for p in packages}
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": IMAGE_ID}]
    for pkg in packages:
        relationships.append({"spdxElementId": IMAGE_ID, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": f"SPDXRef-Package-{pkg.ref}"})
    for pkg in packages:
        relationships += [{"spdxElementId": f"SPDXRef-Package-{pkg.ref}",
                           "relationshipType": "DEPENDS_ON",
                           "relatedSpdxElement": f"SPDXRef-Package-{by_name[d].ref}"}
                          for d in pkg.depends]
    extracted = sorted({ref: text for p in packages for ref, text in p.license.extracted}
                       .items())
    document: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{image.name}-{image.version}",
        "documentNamespace": f"https://spdx.org/spdxdocs/{image.name}-{stable_uuid(content)}",
        "creationInfo": {"created": created(epoch), "creators": [f"Tool: {TOOL}"]},
        "packages": [root, *(_package(p) for p in packages)],
        "relationships": relationships,
    }
    if extracted:
        document["hasExtractedLicensingInfos"] = [
            {"licenseId": ref, "extractedText": text, "name": ref.removeprefix("LicenseRef-")}
            for ref, text in extracted]
    return document

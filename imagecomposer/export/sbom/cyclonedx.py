"""CycloneDX 1.6 JSON: the image as ``metadata.component`` (operating-system), every OS
package a component identified by its purl, dependencies from the resolution."""

from __future__ import annotations

from typing import Any

from imagecomposer import __version__
from imagecomposer.export.sbom.common import ImageInfo, content_id, created, stable_uuid
from imagecomposer.export.sbom.packages import SbomPackage
from imagecomposer.families.licenses import NOASSERTION

IMAGE_REF = "image"


def _supplier(text: str) -> dict[str, Any]:
    name, _, email = text.partition("<")
    email = email.rstrip(">").strip()
    supplier: dict[str, Any] = {"name": name.strip() or email}
    if email:
        supplier["contact"] = [{"email": email}]
    return supplier


def _component(pkg: SbomPackage) -> dict[str, Any]:
    component: dict[str, Any] = {
        "type": "library",
        "bom-ref": pkg.ref,
        "name": pkg.name,
        "version": pkg.version,
        "purl": pkg.purl,
        "hashes": [{"alg": "SHA-256", "content": pkg.sha256}],
        "properties": [{"name": "imagecomposer:arch", "value": pkg.arch},
                       {"name": "imagecomposer:package-kind", "value": pkg.kind}],
    }
    if pkg.supplier:
        component["supplier"] = _supplier(pkg.supplier)
    if pkg.license.expression != NOASSERTION:
        component["licenses"] = [{"expression": pkg.license.expression}]
    if pkg.download_url.startswith(("http://", "https://", "ftp://", "file://")):
        component["externalReferences"] = [{"type": "distribution", "url": pkg.download_url}]
    return component


def cyclonedx_document(image: ImageInfo, packages: tuple[SbomPackage, ...],
                       lock_hash: str, *, epoch: int | None = None) -> dict[str, Any]:
    content = content_id(image, packages, lock_hash)
    root: dict[str, Any] = {"type": "operating-system", "bom-ref": IMAGE_REF,
                            "name": image.name, "version": image.version}
    if image.sha256:
        root["hashes"] = [{"alg": "SHA-256", "content": image.sha256}]
    by_name = {p.name: p for p in packages}
    dependencies = [{"ref": IMAGE_REF, "dependsOn": sorted(p.ref for p in packages)}]
    dependencies += [{"ref": p.ref, "dependsOn": [by_name[d].ref for d in p.depends]}
                     for p in packages]
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{stable_uuid(content)}",
        "version": 1,
        "metadata": {
            "timestamp": created(epoch),
            "tools": {"components": [{"type": "application", "name": "imagecomposer",
                                      "version": __version__}]},
            "component": root,
            "properties": [{"name": "imagecomposer:lock-hash", "value": lock_hash}],
        },
        "components": [_component(p) for p in packages],
        "dependencies": dependencies,
    }

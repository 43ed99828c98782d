"""What both SBOM formats share: the described image, the creation time, stable ids."""

from __future__ import annotations

import hashlib
import uuid

import attrs

from imagecomposer import __version__
from imagecomposer.export.manifest import build_time, iso
from imagecomposer.export.sbom.packages import SbomPackage


@attrs.frozen
class ImageInfo:
    """The image an SBOM describes. ``sha256`` is None for the copy embedded in the image
    itself (an image cannot contain its own hash)."""

    name: str
    version: str = "0.0.0"
    sha256: str | None = None
    file_name: str | None = None


TOOL = f"imagecomposer-{__version__}"


def created() -> str:
    return iso(build_time())


def content_id(image: ImageInfo, packages: tuple[SbomPackage, ...], lock_hash: str) -> str:
    """A hash of everything an SBOM says: its namespace/serial derive from it, so an
    identical build yields a byte-identical document."""
    digest = hashlib.sha256()
    for part in (image.name, image.version, image.sha256 or "", lock_hash, __version__,
                 *(f"{p.purl} {p.sha256} {p.license.expression}" for p in packages)):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def stable_uuid(content: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"imagecomposer:sbom:{content}")

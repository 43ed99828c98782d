"""What both SBOM formats share: the described image, the creation time, stable ids."""

from __future__ import annotations

import hashlib
import uuid

import attrs

from imagecomposer import __version__
from imagecomposer.export.sbom.packages import SbomPackage
from imagecomposer.foundation.epoch import build_epoch, epoch_iso


@attrs.frozen
class ImageInfo:
    """The image an SBOM describes. ``sha256`` is None for the copy embedded in the image
    itself (an image cannot contain its own hash)."""

    name: str
    version: str = "0.0.0"
    sha256: str | None = None
    file_name: str | None = None


TOOL = f"imagecomposer-{__version__}"


def created(epoch: int | None = None) -> str:
    """The documents' creation time: the build epoch (``SOURCE_DATE_EPOCH``, else the fixed
    default of :mod:`imagecomposer.foundation.epoch`), never the clock: a copy of each SBOM
    is embedded in the image, whose bytes must not depend on when it was built."""
    return epoch_iso(build_epoch() if epoch is None else epoch)


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

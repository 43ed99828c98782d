"""SPDX 2.3 and CycloneDX 1.6 SBOMs of an image, from its lock and its root tree."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from imagecomposer.export.sbom.common import ImageInfo
from imagecomposer.export.sbom.cyclonedx import cyclonedx_document
from imagecomposer.export.sbom.packages import SbomPackage, collect
from imagecomposer.export.sbom.spdx import spdx_document
from imagecomposer.foundation.digest import sha256_file
from imagecomposer.foundation.epoch import choose_epoch
from imagecomposer.foundation.errors import ExportError, ImagePathError
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.foundation.rootfs import Root
from imagecomposer.foundation.settings import SBOM_FORMATS
from imagecomposer.lock import Lock

SUFFIXES = {"spdx": ".spdx.json", "cyclonedx": ".cdx.json"}
EMBED_DIR = "usr/share/sbom"

__all__ = ["EMBED_DIR", "SUFFIXES", "ImageInfo", "SbomPackage", "collect", "cyclonedx_document",
           "embed_sboms", "generate_sboms", "sbom_command", "sbom_documents", "spdx_document",
           "write_sbom",
           "write_sboms"]


def sbom_documents(image: ImageInfo, packages: tuple[SbomPackage, ...], lock_hash: str,
                   formats: Iterable[str] = ("spdx", "cyclonedx"), *,
                   epoch: int | None = None) -> dict[str, dict[str, Any]]:
    """``{format: document}`` describing ``image`` made of ``packages``, created at
    ``epoch`` (default: :func:`imagecomposer.foundation.epoch.build_epoch`)."""
    documents: dict[str, dict[str, Any]] = {}
    for fmt in formats:
        if fmt == "spdx":
            documents[fmt] = spdx_document(image, packages, lock_hash, epoch=epoch)
        elif fmt == "cyclonedx":
            documents[fmt] = cyclonedx_document(image, packages, lock_hash, epoch=epoch)
        else:
            raise ExportError(f"unknown SBOM format '{fmt}' (known: spdx, cyclonedx)")
    return documents


def generate_sboms(lock: Lock, tree: Path, image: ImageInfo,
                   formats: Iterable[str] = SBOM_FORMATS, *,
                   epoch: int | None = None) -> dict[str, dict[str, Any]]:
    """``{format: document}`` of the installed ``tree``, created at ``epoch`` (default: the
    build epoch of ``lock``, as a build of it chooses it: ``SOURCE_DATE_EPOCH``, else the
    newest date of its repositories, else the fixed default). Raises ExportError when lock
    and tree disagree."""
    if epoch is None:
        epoch = choose_epoch(inputs=lock.source_date)[0]
    return sbom_documents(image, collect(lock, tree), lock.hash, formats, epoch=epoch)


def sbom_text(document: Mapping[str, Any]) -> str:
    """Stable JSON (sorted keys)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_sbom(path: Path, document: Mapping[str, Any]) -> Path:
    """Stable JSON (sorted keys), written atomically."""
    try:
        atomic_write(path, sbom_text(document))
    except OSError as exc:
        raise ExportError(f"cannot write SBOM {path}: {exc.strerror}") from None
    return path


def write_sboms(directory: Path, stem: str,
                documents: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return [write_sbom(directory / f"{stem}{SUFFIXES[fmt]}", doc)
            for fmt, doc in documents.items()]


def embed_sboms(tree: Path, stem: str, documents: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    """Install the SBOMs into the image at ``/usr/share/sbom/`` (mode 0644), through
    :class:`~imagecomposer.foundation.rootfs.Root`: a symlink planted at ``/usr/share/sbom`` (or at
    a
    file name) resolves inside the image, never onto the host."""
    try:
        with Root(tree) as root:
            return [root.write(f"/{EMBED_DIR}/{stem}{SUFFIXES[fmt]}", sbom_text(doc),
                               mode=0o644) for fmt, doc in documents.items()]
    except ImagePathError as exc:
        raise ExportError(f"cannot embed the SBOMs in the image: {exc}") from exc


def sbom_command(lock_file: Path, tree: Path, output_dir: Path, *, name: str | None = None,
                 version: str = "0.0.0", image: Path | None = None,
                 formats: Iterable[str] = SBOM_FORMATS, epoch: int | None = None
                 ) -> list[Path]:
    """What ``imagecomposer sbom LOCK TREE`` does: read the lock, describe the tree (and the
    image file's hash when ``image`` is given), write ``NAME.spdx.json``/``NAME.cdx.json``,
    created at ``epoch`` (default: the lock's build epoch, see :func:`generate_sboms`). With
    the build's name, version and raw disk, the same bytes as the build's SBOMs."""

    lock = Lock.read(lock_file)
    name = name or (image.name.split(".")[0] if image is not None else lock_file.stem)
    info = ImageInfo(name, version, sha256_file(image) if image is not None else None,
                     image.name if image is not None else None)
    return write_sboms(output_dir, name, generate_sboms(lock, tree, info, formats,
                                                        epoch=epoch))

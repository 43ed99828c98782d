"""The finalize stage in one call, for the pipeline: SBOMs (embedded copy is the compose
stage's business, see :func:`imagecomposer.export.sbom.embed_sboms`), conversion,
compression, signatures, manifest, SHA256SUMS, atomic publication.

The SBOMs' described image carries the SHA256 of the raw disk: the content identity that
every output format encodes (the per-format file hashes are in the manifest and SHA256SUMS).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from imagecomposer.compose.layout import Layout
from imagecomposer.export.exporter import Artifact, Exporter, ExportResult, FileSigner
from imagecomposer.export.manifest import build_manifest
from imagecomposer.export.sbom import ImageInfo, generate_sboms, write_sboms
from imagecomposer.foundation.digest import sha256_file
from imagecomposer.lock import Lock
from imagecomposer.spec.model import Spec


def finalize(raw: Path, spec: Spec, output_dir: Path, *, spec_data: Mapping[str, Any],
             lock: Lock | None = None, tree: Path | None = None, layout: Layout | None = None,
             signer: FileSigner | None = None, stage_timings: Mapping[str, float] | None = None,
             work_dir: Path | None = None, exporter: Exporter | None = None,
             min_current_version: str | None = None) -> ExportResult:
    """Publish ``raw`` as the spec's ``output`` asks. ``spec_data`` is the spec as plain data
    (secrets are redacted here again in any case); SBOMs need both ``lock`` and ``tree``."""
    exporter = exporter or Exporter()
    name = spec.image.name
    base = spec.image.base
    with tempfile.TemporaryDirectory(prefix="sbom-", dir=work_dir) as scratch:
        extra: list[Path] = []
        if spec.output.sbom and lock is not None and tree is not None:
            image = ImageInfo(name, spec.image.version, sha256_file(raw), raw.name)
            extra = write_sboms(Path(scratch), name,
                                generate_sboms(lock, tree, image, spec.output.sbom))

        def manifest(artifacts: Sequence[Artifact], directory: Path) -> Mapping[str, Any]:
            return build_manifest(
                spec_data=spec_data, artifacts=artifacts, image_name=name,
                image_version=spec.image.version, arch=base.arch,
                base_os={"os": base.os, "version": base.version, "type": base.type},
                lock_hash=lock.hash if lock is not None else None, layout=layout,
                stage_timings=stage_timings, output_dir=directory,
                min_current_version=min_current_version)

        return exporter.export(raw, spec.output.formats, spec.output.compression, output_dir,
                               extra_files=extra, name=name, signer=signer, manifest=manifest)

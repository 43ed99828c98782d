"""Finalize in one call (what the pipeline's finalize stage runs): SBOMs, conversion,
compression, signatures, manifest, signed provenance, SHA256SUMS, atomic publication.

The SBOMs' described image carries the SHA256 of the raw disk: the content identity that
every output format encodes (the per-format file hashes are in the manifest and SHA256SUMS).
The manifest holds the spec with its secrets redacted, and the hash of exactly that
(``spec_hash``); a secret never reaches an output file, hashed or not.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from imagecomposer.compose.layout import Layout
from imagecomposer.export.exporter import Artifact, Exporter, ExportResult
from imagecomposer.export.manifest import build_manifest
from imagecomposer.export.provenance import BUILDER_ID, slsa_predicate, write_provenance
from imagecomposer.export.sbom import ImageInfo, SbomPackage, collect, sbom_documents, write_sboms
from imagecomposer.lock import Lock
from imagecomposer.sign.signer import Signer
from imagecomposer.spec.model import Spec


def finalize(raw: Path, spec: Spec, output_dir: Path, *, lock: Lock | None = None,
             packages: tuple[SbomPackage, ...] | None = None, tree: Path | None = None,
             lock_file: Path | None = None,
             layout: Layout | Mapping[str, Any] | None = None,
             signer: Signer | None = None,
             work_dir: Path | None = None, exporter: Exporter | None = None,
             min_current_version: str | None = None,
             epoch_source: str | None = None,
             configuration: Mapping[str, Any] | None = None,
             builder: str = BUILDER_ID) -> ExportResult:
    """Publish ``raw`` into ``output_dir`` as ``spec.output`` asks.

    SBOMs (``spec.output.sbom``) need the ``lock`` and the image's packages: ``packages``
    (what the configuration stage collected) or an installed ``tree`` to collect them from.
    ``lock_file`` is published too, as ``NAME.lock.json``. ``layout`` (a Layout or its
    data) goes into the manifest. How long the stages took is not: the manifest is a pure
    function of the build's inputs (the timings are in the build's result and log).

    The exporter's epoch is the clock of every output (vhd headers, the SBOMs' creation
    time, the manifest's ``built_at`` and ``build_epoch``); ``epoch_source`` says where it
    came from, for the manifest.

    With a ``signer``, ``NAME.provenance.intoto.json`` holds the signed SLSA provenance and
    SBOM attestations (:mod:`imagecomposer.export.provenance`); ``configuration`` is the
    global configuration that affected the build (plain data), recorded there; ``builder``
    is its ``runDetails.builder.id`` (:func:`imagecomposer.export.provenance.builder_id`).
    """
    exporter = exporter or Exporter()
    name = spec.image.name
    base = spec.image.base
    with (tempfile.TemporaryDirectory(prefix="tmp-finalize-", dir=work_dir) as scratch,
          ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as hashing):
        extra: list[Path] = []
        if lock_file is not None:
            extra.append(Path(shutil.copyfile(lock_file, Path(scratch) / f"{name}.lock.json")))
        sbom_lock = lock if spec.output.sbom else None
        if sbom_lock is not None and packages is None and tree is not None:
            packages = collect(sbom_lock, tree)
        # the SBOMs name the raw image's SHA256: hashed (2 GiB, holes as zeros: seconds of
        # CPU) while qemu-img converts, the SBOMs written once both are done
        raw_sha256 = (hashing.submit(exporter.sha256, raw)
                      if sbom_lock is not None and packages is not None else None)

        def extra_files() -> list[Path]:
            if sbom_lock is None or packages is None or raw_sha256 is None:
                return extra
            image = ImageInfo(name, spec.image.version, raw_sha256.result(), f"{name}.raw")
            return extra + write_sboms(Path(scratch), name, sbom_documents(
                image, packages, sbom_lock.hash, spec.output.sbom, epoch=exporter.epoch))

        def manifest(artifacts: Sequence[Artifact], directory: Path) -> Mapping[str, Any]:
            return build_manifest(
                spec_data=spec.to_data(), artifacts=artifacts, image_name=name,
                image_version=spec.image.version, arch=base.arch,
                base_os={"os": base.os, "version": base.version, "type": base.type},
                lock_hash=lock.hash if lock is not None else None, layout=layout,
                output_dir=directory,
                min_current_version=min_current_version, epoch=exporter.epoch,
                epoch_source=epoch_source)

        def attest(artifacts: Sequence[Artifact], directory: Path) -> Path:
            assert signer is not None
            predicate = slsa_predicate(spec_data=spec.to_data(), lock=lock,
                                       epoch=exporter.epoch, epoch_source=epoch_source,
                                       configuration=configuration, builder=builder)
            return write_provenance(directory, name, signer, artifacts=artifacts,
                                    predicate=predicate)

        return exporter.export(raw, spec.output.formats, spec.output.compression, output_dir,
                               extra_files=extra_files, name=name, signer=signer, manifest=manifest,
                               attest=attest if signer is not None else None)

"""The Exporter: formats, compression, checksums, manifest, SBOMs, output verification."""

from imagecomposer.export.exporter import Artifact, Exporter, ExportResult
from imagecomposer.export.formats import FORMATS, check_combination, combination_problems
from imagecomposer.export.manifest import build_manifest, write_manifest
from imagecomposer.export.verify import verify_outputs

__all__ = ["FORMATS", "Artifact", "ExportResult", "Exporter", "build_manifest",
           "check_combination", "combination_problems", "verify_outputs", "write_manifest"]

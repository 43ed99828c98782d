"""The finalize stage asks the exporter for the image cache's content digests exactly when
the build stores into the image cache (then the store reads no output again)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest

from imagecomposer.export.exporter import Exporter, ExportResult
from imagecomposer.pipeline import stages
from imagecomposer.spec import Spec

EXAMPLE = Path(__file__).parents[2] / "examples" / "debian-12-minimal.yml"


@pytest.mark.parametrize("use_image_cache", [True, False])
def test_finalize_makes_content_digests_for_the_image_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_image_cache: bool) -> None:
    spec = Spec.load(EXAMPLE)
    spec = attrs.evolve(spec, output=attrs.evolve(spec.output, sbom=(), sign=None))
    seen: list[Exporter] = []

    def finalize(raw: Path, *args: Any, exporter: Exporter, **kwargs: Any) -> ExportResult:
        seen.append(exporter)
        return ExportResult(output_dir=tmp_path, artifacts=(), sums=tmp_path / "SHA256SUMS")

    monkeypatch.setattr(stages, "finalize", finalize)
    (tmp_path / "layout.json").write_text("{}")
    ctx = SimpleNamespace(
        raw_path=tmp_path / "disk.raw", output_dir=tmp_path / "out", lock=lambda: None,
        lock_path=tmp_path / "lock.json", layout_path=tmp_path / "layout.json",
        workspace=SimpleNamespace(root=tmp_path), parallel=1, emit=lambda _event: None,
        use_image_cache=use_image_cache, sbom_packages_path=tmp_path / "sbom.json",
        options=SimpleNamespace(worker=None))
    inputs = SimpleNamespace(spec=spec, provider=None, epoch_source="fixed",
                             epoch=1_700_000_000)
    stages.FinalizeStage().run(ctx, inputs)  # type: ignore[arg-type]
    assert [e.content_digests for e in seen] == [use_image_cache]

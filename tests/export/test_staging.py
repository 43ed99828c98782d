"""Atomic replacement of the output directory, with and without renameat2 exchange."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecomposer.foundation import staging
from imagecomposer.foundation.errors import ExportError


def fill(directory: Path, text: str) -> Path:
    directory.mkdir()
    (directory / "f").write_text(text)
    return directory


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool) -> None:
    if not exchange:
        monkeypatch.setattr(staging, "_exchange", lambda a, b: False)
    target = fill(tmp_path / "out", "old")
    staging.replace_dir(fill(tmp_path / "new", "new"), target)
    assert (target / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    staging.replace_dir(fill(tmp_path / "first", "first"), tmp_path / "fresh")
    assert (tmp_path / "fresh/f").read_text() == "first"


def test_fallback_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "_exchange", lambda a, b: False)
    target = fill(tmp_path / "out", "old")
    with pytest.raises(ExportError, match="cannot move outputs"):
        staging.replace_dir(tmp_path / "missing-stage", target)
    assert (target / "f").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_context(tmp_path: Path) -> None:
    target = tmp_path / "deep/out"
    with staging.staged(target) as stage:
        (stage / "a").write_text("a")
        assert not target.exists()
    assert (target / "a").read_text() == "a"
    with pytest.raises(RuntimeError), staging.staged(target) as stage:
        (stage / "b").write_text("b")
        raise RuntimeError
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["out"]

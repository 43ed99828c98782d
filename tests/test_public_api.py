"""Everything the README and docs/api.md name is importable from the package root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import imagecomposer

COMPOSABLE = ("Spec", "Resolver", "Resolution", "Lock", "PackageCache", "ImageCache",
              "Composer", "Signer", "Exporter", "ImagePipeline", "BuildReport")


@pytest.mark.parametrize("name", [n for n in imagecomposer.__all__ if n != "__version__"])
def test_export(name: str) -> None:
    assert getattr(imagecomposer, name).__name__ == name


def test_unknown_name() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Pipeline'"):
        imagecomposer.Pipeline  # noqa: B018


def test_the_composable_objects_are_listed_and_completable() -> None:
    assert set(COMPOSABLE) <= set(imagecomposer.__all__)
    assert set(imagecomposer.__all__) <= set(dir(imagecomposer))


def test_import_stays_cheap() -> None:
    """``import imagecomposer`` loads none of the subpackages (the names are lazy)."""
    code = ("import sys, imagecomposer; "
            "print(sorted(m for m in sys.modules if m.startswith('imagecomposer.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_every_export_is_documented() -> None:
    api = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    for name in imagecomposer.__all__:
        if name != "__version__":
            assert f"`{name}" in api, name

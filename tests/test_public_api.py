"""Everything the README names is importable from the package root."""

from __future__ import annotations

import pytest

import imagecomposer


@pytest.mark.parametrize("name", [n for n in imagecomposer.__all__ if n != "__version__"])
def test_export(name: str) -> None:
    assert getattr(imagecomposer, name).__name__ == name


def test_unknown_name() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Pipeline'"):
        imagecomposer.Pipeline  # noqa: B018

from __future__ import annotations

from pathlib import Path

import pytest


def make_raw(path: Path, size: int) -> Path:
    """A sparse raw image with a few MiB of varied data (compressible and not)."""
    with path.open("wb") as f:
        f.truncate(size)
        f.seek(1 << 20)
        f.write(b"imagecomposer test data\n" * 40000)  # ~1 MiB of text
        f.seek(size // 2)
        f.write(bytes(range(256)) * 4096)  # 1 MiB pattern
    return path


@pytest.fixture
def raw_image(tmp_path: Path) -> Path:
    # 64 MiB + 12 KiB: not a whole number of MiB, so vhd-fixed must round it up
    return make_raw(tmp_path / "disk.raw", (64 << 20) + 12288)

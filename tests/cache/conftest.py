"""Fixtures of the cache tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A spec's directory with the files the image cache keys fingerprint (a file the spec
    copies and a post-install script)."""
    spec_dir = tmp_path / "project"
    (spec_dir / "files").mkdir(parents=True)
    (spec_dir / "files/motd").write_text("hello\n")
    (spec_dir / "post.sh").write_text("#!/bin/sh\necho hi\n")
    return spec_dir

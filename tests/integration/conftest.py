"""One package cache and installed-tree cache for all image builds of a test session."""

from __future__ import annotations

import pytest

from imagecomposer.config import apply_overrides, load_config
from imagecomposer.config.model import Config


@pytest.fixture(scope="session")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    base = tmp_path_factory.mktemp("ic")
    loaded = load_config(None, environ={})
    loaded = apply_overrides(loaded, {"core.cache_dir": str(base / "cache"),
                                      "core.work_dir": str(base / "work")}, "command line")
    return loaded.config

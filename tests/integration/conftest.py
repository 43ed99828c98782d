"""One package cache and installed-tree cache for all image builds of a test session, and
the example images built once per session (``example_build``), for every test that reads
them (the acceptance test, inspect and compare)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.config import apply_overrides, load_config
from imagecomposer.config.model import Config
from imagecomposer.pipeline.build import BuildReport, ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec import Spec

EXAMPLES = Path(__file__).parents[2] / "examples"
Built = tuple[Spec, BuildReport, Path]  # the spec, its first build's report, the output dir


@pytest.fixture(scope="session")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    base = tmp_path_factory.mktemp("ic")
    loaded = load_config(None, environ={})
    loaded = apply_overrides(loaded, {"core.cache_dir": str(base / "cache"),
                                      "core.work_dir": str(base / "work")}, "command line")
    return loaded.config


@pytest.fixture(scope="session")
def example_build(config: Config, tmp_path_factory: pytest.TempPathFactory
                  ) -> Callable[[str, Path | None], Built]:
    """``example_build(name, spec_path=None)``: the spec examples/NAME.yml (or the one at
    ``spec_path``) built once per session; later calls return the same build."""
    built: dict[str, Built] = {}

    def build(name: str, spec_path: Path | None = None) -> Built:
        if name not in built:
            spec = Spec.load(spec_path or EXAMPLES / f"{name}.yml")
            out = tmp_path_factory.mktemp(name) / "out"
            report = ImagePipeline(config).build(spec, BuildOptions(output_dir=out))
            built[name] = (spec, report, out)
        return built[name]

    return build

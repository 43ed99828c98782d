"""A failed build keeps its work trees with ``core.cleanup_on_failure: false`` or
``--keep-temp`` and says where (issue 12: the composer deleted its trees on any failure,
whatever the setting); by default they are removed.

Hermetic: the real stages against a signed test archive on 127.0.0.1; the installed tree
(a stand-in without a kernel) comes from the installed-tree cache, so the configuration
stage fails for real (no /etc/passwd to lock root in) after writing the tree.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from imagecomposer.cache.trees import TreeCache
from imagecomposer.compose.composer import Composer
from imagecomposer.config.model import Config
from imagecomposer.foundation.epoch import choose_epoch
from imagecomposer.foundation.errors import ImageComposerError
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.resolver import Resolver
from imagecomposer.spec.model import Base, Image, Output, Spec
from tests.fixtures.debrepo import served_debian

SPEC = Spec(image=Image("kept", Base("debian", "12")), output=Output(formats=("raw",), sbom=()))


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Config]:
    with served_debian(tmp_path) as config:
        tree = tmp_path / "installed"  # no kernel: the configuration stage fails
        (tree / "var/lib/dpkg").mkdir(parents=True)
        (tree / "etc").mkdir()
        lock = Resolver(config).resolve(SPEC).lock
        epoch, _ = choose_epoch(inputs=lock.source_date)  # the build's epoch
        TreeCache(config.tree_cache_dir).store(Composer(config, epoch=epoch).tree_key(lock),
                                               tree)
        yield config


def failed_build(config: Config, options: BuildOptions, caplog: pytest.LogCaptureFixture
                 ) -> tuple[list[Path], str]:
    """The work trees the failed build left in its workspace, and its warnings."""
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.raises(ImageComposerError):
        ImagePipeline(config).build(SPEC, options)
    work = config.core.work_dir
    left = sorted(p.relative_to(work) for p in work.glob("*/tmp-configuration/*"))
    return left, caplog.text


def test_failed_build_keeps_its_trees_only_when_asked(
        config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    options = BuildOptions(output_dir=tmp_path / "out")
    left, said = failed_build(config, options, caplog)
    assert left == [] and "are kept in" not in said

    left, said = failed_build(config, attrs.evolve(options, keep_temp=True), caplog)
    assert any(p.name == "root" for p in left), left
    (workspace,) = {p.parts[0] for p in left}
    assert f"work trees are kept in {config.core.work_dir / workspace} (--keep-temp)" in said
    assert (config.core.work_dir / workspace / "tmp-configuration/root/etc").is_dir()

    keep = attrs.evolve(config, core=attrs.evolve(config.core, cleanup_on_failure=False))
    left, said = failed_build(keep, options, caplog)
    assert any(p.name == "root" for p in left), left
    assert "(core.cleanup_on_failure is false)" in said


def test_the_cli_says_where_the_kept_trees_are(config: Config, tmp_path: Path) -> None:
    """``imagecomposer build --keep-temp`` on a failing build, through a real process."""
    ic = tmp_path / "ic.yml"
    provider = config.providers["debian"]
    ic.write_text(f"core: {{cache_dir: {config.core.cache_dir}, work_dir: "
                  f"{config.core.work_dir}}}\n"
                  f"providers:\n  debian: {{kind: deb, mirror: '{provider.mirror}', "
                  f"security_mirror: '{provider.mirror}', keyring: {provider.keyring}}}\n")
    spec = tmp_path / "kept.yml"
    spec.write_text("image: {name: kept, base: {os: debian, version: '12'}}\n"
                    "output: {formats: [raw], sbom: []}\n")
    done = subprocess.run([sys.executable, "-m", "imagecomposer", "--config", str(ic), "build",
                           "--keep-temp", "-o", str(tmp_path / "out"), str(spec)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0
    assert "work trees are kept in " in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert list(config.core.work_dir.glob("*/tmp-configuration/root"))

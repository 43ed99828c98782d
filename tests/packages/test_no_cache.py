"""``--no-cache`` bypasses every cache (issue 12: it still read and wrote the repository
metadata cache): the build's configuration has every cache disabled, and a packages-stage
build leaves nothing in the cache directory.

Hermetic: the real validate and packages stages against a signed archive on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from imagecomposer.config.model import Config, without_caches
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from tests.fixtures.debrepo import DebArchive, GpgKey, RepoServer
from tests.packages.conftest import make_config, make_spec


def entries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() \
        else []


def test_no_cache_leaves_every_cache_alone(tmp_path: Path, gpg_key: GpgKey,
                                           server: RepoServer, archive: DebArchive) -> None:
    config = make_config(tmp_path, server.url + "/debian", gpg_key.keyring)
    pipeline = ImagePipeline(config)
    options = BuildOptions(until="packages", output_dir=tmp_path / "out", no_cache=True)
    report = pipeline.build(make_spec(), options)
    assert [o.status for o in report.run.outcomes][:2] == ["ran", "ran"]
    assert (tmp_path / "out" / "test.lock.json").is_file()
    assert entries(config.metadata_cache_dir) == []
    assert entries(config.package_cache_dir) == []
    assert not list(config.core.work_dir.glob("metadata-*"))  # the throwaway store is gone

    # the same build with the caches: metadata is cached (what --no-cache left alone)
    other = attrs.evolve(config, core=attrs.evolve(config.core, work_dir=tmp_path / "w2"))
    ImagePipeline(other).build(make_spec(), BuildOptions(until="packages",
                                                         output_dir=tmp_path / "out"))
    assert entries(config.metadata_cache_dir) != []


def test_without_caches_disables_every_cache() -> None:
    storage = without_caches(Config()).storage
    assert not any(getattr(storage, name).enabled for name in (
        "package_cache", "image_cache", "tree_cache", "initramfs_cache", "metadata_cache"))

"""Bit-identical rebuilds (issue 10), checked the way a user checks them: the session's
build of each example (``example_build``, shared with the acceptance, inspect and compare
tests) is checked with :func:`imagecomposer.check_reproducible`, the second build of
``build --check-reproducible``: the spec built again from the first build's lock, with every
cache off, in fresh work, cache and output directories, and every output compared byte for
byte, ``manifest.json`` and ``SHA256SUMS`` included. Every disk format the Exporter writes
is checked by ``tests/integration/test_rootless.py``: the verity example, built by root and
by an unprivileged user, gives the same bytes in all eight formats.

Cost: one build per example checked (~1-4 min each on the 2-core dev host, the comparison
itself seconds). The minimal example is checked in every run; the server example (one more
build, ~4 min) only with IMAGECOMPOSER_TEST_SERVER_REPRODUCIBLE=1, to keep CI within its
budget. Run without SOURCE_DATE_EPOCH: both builds then take the newest Release date of the
same lock, which the manifest must record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer import check_reproducible
from imagecomposer.config.model import Config
from imagecomposer.lock import Lock
from imagecomposer.pipeline.build import BuildReport
from imagecomposer.spec import Spec

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow]

ExampleBuild = Callable[[str, Path | None], tuple[Spec, BuildReport, Path]]
NAME = "debian-12-minimal"
SERVER = "debian-12-server"
SERVER_OPT_IN = "IMAGECOMPOSER_TEST_SERVER_REPRODUCIBLE"


@pytest.mark.parametrize("name", [NAME, pytest.param(SERVER, marks=pytest.mark.skipif(
    os.environ.get(SERVER_OPT_IN) != "1", reason=f"one more build: set {SERVER_OPT_IN}=1"))])
def test_the_example_passes_check_reproducible(name: str, example_build: ExampleBuild,
                                               config: Config) -> None:
    spec, _, first = example_build(name, None)
    names = sorted(p.name for p in first.iterdir() if p.is_file())
    assert {f"{name}.raw", f"{name}.qcow2", f"{name}.spdx.json", f"{name}.cdx.json",
            f"{name}.lock.json", "manifest.json", "SHA256SUMS"} <= set(names)

    report = check_reproducible(spec, first, config=config)  # NotReproducible says where

    assert report.identical and list(report.compared) == names and report.exempt == ()
    assert report.summary() == f"reproducible: {len(names)} files compared, all byte-identical"
    assert not [p for p in config.core.work_dir.iterdir()
                if p.name.startswith("check-reproducible-")]  # the second build is gone
    manifest = json.loads((first / "manifest.json").read_text())
    if "SOURCE_DATE_EPOCH" not in os.environ:  # the epoch of the lock's newest Release
        source_date = Lock.read(first / f"{name}.lock.json").source_date
        assert source_date is not None
        assert (manifest["build_epoch"], manifest["build_epoch_source"]) == \
            (source_date, "lock")

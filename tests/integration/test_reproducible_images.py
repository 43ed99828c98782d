"""Bit-identical rebuilds (issue 10): the minimal example built a second time,
from the first build's lock, with every cache off, in other work, cache and output
directories, gives the same bytes in every output; and every disk format the Exporter
writes is the same when the raw disk is converted again.

The first build is the session's (``example_build``, shared with the acceptance, inspect and
compare tests), so this adds one build (~2-3 min on the 2-core dev host) and the format
conversions (~1-2 min, most of it the deflate of vmdk-stream). Both builds take the default
build epoch unless SOURCE_DATE_EPOCH is set for the whole session: run without it; then
both take the newest Release date of the same lock, which the manifests must record.

Every file of the output directory is compared, ``manifest.json`` and ``SHA256SUMS``
included (the manifest records no stage timings: they are in the build's result).
"""

from __future__ import annotations

import concurrent.futures
import filecmp
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.config import apply_overrides, load_config
from imagecomposer.export import Exporter
from imagecomposer.export.formats import FORMATS
from imagecomposer.inspect import compare
from imagecomposer.lock import Lock
from imagecomposer.pipeline.build import BuildReport, ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec import Spec

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow]

ExampleBuild = Callable[[str, Path | None], tuple[Spec, BuildReport, Path]]
NAME = "debian-12-minimal"
EXAMPLES = Path(__file__).parents[2] / "examples"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sums(out: Path) -> dict[str, str]:
    lines = (line.split("  ", 1) for line in (out / "SHA256SUMS").read_text().splitlines())
    return {name: digest for digest, name in lines}


def test_minimal_example_rebuilds_bit_identically(example_build: ExampleBuild,
                                                  tmp_path_factory: pytest.TempPathFactory
                                                  ) -> None:
    _, _, first = example_build(NAME, None)
    base = tmp_path_factory.mktemp("rebuild")
    config = apply_overrides(load_config(None, environ={}),
                             {"core.cache_dir": str(base / "cache"),
                              "core.work_dir": str(base / "work")}, "command line").config
    second = base / "out"
    ImagePipeline(config).build(Spec.load(EXAMPLES / f"{NAME}.yml"), BuildOptions(
        output_dir=second, no_cache=True, locked=first / f"{NAME}.lock.json"))
    names = sorted(p.name for p in first.iterdir() if p.is_file())
    assert names == sorted(p.name for p in second.iterdir() if p.is_file())
    assert {f"{NAME}.raw", f"{NAME}.qcow2", f"{NAME}.spdx.json", f"{NAME}.cdx.json",
            f"{NAME}.lock.json", "SHA256SUMS"} <= set(names)
    listed_first, listed_second = sums(first), sums(second)
    differing = [name for name in names if sha256(first / name) != sha256(second / name)]
    if f"{NAME}.raw" in differing:  # say which files inside differ
        report = compare(first / f"{NAME}.raw", second / f"{NAME}.raw", mode="files")
        differing.append(report.text())
    assert differing == []
    assert listed_first == listed_second
    assert listed_second[f"{NAME}.lock.json"] == sha256(second / f"{NAME}.lock.json")
    manifests = [json.loads((out / "manifest.json").read_text()) for out in (first, second)]
    if "SOURCE_DATE_EPOCH" not in os.environ:  # the epoch of the lock's newest Release
        source_date = Lock.read(first / f"{NAME}.lock.json").source_date
        assert source_date is not None
        assert (manifests[0]["build_epoch"], manifests[0]["build_epoch_source"]) == \
            (source_date, "lock")


def test_every_export_format_of_the_example_is_reproducible(example_build: ExampleBuild,
                                                            tmp_path: Path) -> None:
    _, _, out = example_build(NAME, None)
    raw = out / f"{NAME}.raw"
    identity = sums(out)[raw.name]  # the raw's SHA-256, as export derives the ids from it
    differing = []
    for fmt, info in FORMATS.items():
        if fmt == "raw":
            continue
        targets = []
        for attempt in ("a", "b"):  # same file name, other directory: as two builds
            (tmp_path / attempt).mkdir(exist_ok=True)
            targets.append(tmp_path / attempt / f"{NAME}{info.suffix}")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both at once: 2 processes
            converted = list(pool.map(
                lambda target, fmt=fmt: Exporter().convert(raw, fmt, target, identity=identity),
                targets))
        if not filecmp.cmp(*converted, shallow=False):
            differing.append(fmt)
        for path in converted:
            path.unlink()
    assert differing == []

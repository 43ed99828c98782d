"""A tampered image cache entry is never restored by a build (issue 18, item 3).

The image pipeline runs with stand-in stages (no packages, no root) so that only the image
cache around them is exercised: the cached raw image is rewritten with its mtime put back,
and the next build must not be a cache hit but build normally, with outputs that match their
SHA256SUMS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import pytest

from imagecomposer.config.model import Config, Core, ImageCacheConfig, Storage
from imagecomposer.foundation.digest import sparse_sha256
from imagecomposer.lock import Lock
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildContext, BuildOptions
from imagecomposer.pipeline.engine import Engine
from imagecomposer.spec import Spec
from imagecomposer.spec.model import STAGES

EXAMPLE = Path(__file__).parents[2] / "examples" / "debian-12-minimal.yml"


@attrs.define
class FakeStage:
    name: str
    ran: list[str]
    consumes: tuple[str, ...] = ()

    def inputs(self, ctx: BuildContext, upstream: Mapping[str, str]) -> dict[str, object]:
        return {"stage": self.name, "upstream": dict(upstream)}

    def outputs_present(self, ctx: BuildContext) -> bool:
        if self.name == "packages":
            return ctx.lock_path.exists()
        if self.name == "finalize":
            return (ctx.output_dir / "SHA256SUMS").exists()
        return True

    def run(self, ctx: BuildContext, inputs: object) -> None:
        self.ran.append(self.name)
        if self.name == "packages":
            Lock(os="debian", version="12", arch="amd64", kind="deb", repositories=(),
                 packages=()).write(ctx.lock_path)
        elif self.name == "finalize":
            out = ctx.output_dir
            out.mkdir(parents=True, exist_ok=True)
            with (out / "disk.raw").open("wb") as f:
                f.truncate(64 << 20)  # sparse, some data in the middle
                f.seek(32 << 20)
                f.write(b"the image" * 1000)
            sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
                           for p in sorted(out.iterdir()))
            (out / "SHA256SUMS").write_text(sums)


def builder(config: Config, stages: list[FakeStage], ran: list[str]) -> Callable[[Path], bool]:
    """``build(out)``: the example built by an image pipeline running ``stages``; whether
    it was an image cache hit (``ran`` cleared first: the stages that ran, in order)."""
    pipeline = ImagePipeline(config)
    pipeline.engine = Engine(stages, events=pipeline.events)
    spec = Spec.load(EXAMPLE)

    def build(out: Path) -> bool:
        ran.clear()
        return pipeline.build(spec, BuildOptions(output_dir=out)).image_cache_hit

    return build


def sums_ok(out: Path) -> bool:
    for line in (out / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        if hashlib.sha256((out / name).read_bytes()).hexdigest() != digest:
            return False
    return True


def test_tampered_cached_image_is_rebuilt_not_restored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"))
    ran: list[str] = []
    build = builder(config, [FakeStage(n, ran) for n in STAGES], ran)

    assert not build(tmp_path / "first") and "finalize" in ran
    assert build(tmp_path / "second") and "finalize" not in ran  # a hit
    cached = next((config.image_cache_dir).rglob("files/disk.raw"))
    st = cached.stat()
    cached.chmod(0o644)
    with cached.open("r+b") as f:  # same size, other bytes, the mtime put back
        f.seek(32 << 20)
        f.write(b"TAMPERED!")
    os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns))
    with caplog.at_level(logging.INFO):
        hit = build(tmp_path / "third")
    assert not hit and "finalize" in ran  # a miss: built normally
    assert sums_ok(tmp_path / "third")
    assert "is damaged (disk.raw does not match its stored digest)" in caplog.text
    assert "image cache miss: the entry for 'debian-12-minimal' was damaged" in caplog.text
    assert build(tmp_path / "fourth") and sums_ok(tmp_path / "fourth")  # stored again


def test_forged_cached_image_with_forged_digests_is_rebuilt(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Someone who can write the cache rewrites the image *and* the digests recorded beside
    it (issue 18): the record's seal, made with a key outside the cache, no longer holds."""
    config = Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"))
    ran: list[str] = []
    build = builder(config, [FakeStage(n, ran) for n in STAGES], ran)

    assert not build(tmp_path / "first")
    cached = next((config.image_cache_dir).rglob("files/disk.raw"))
    st = cached.stat()
    cached.chmod(0o644)
    with cached.open("r+b") as f:
        f.seek(32 << 20)
        f.write(b"TAMPERED!")
    os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns))
    record_path = cached.parents[1] / "entry.json"
    record = json.loads(record_path.read_text())
    for item in record["files"]:
        if item["name"] == "disk.raw":
            item["sha256"] = hashlib.sha256(cached.read_bytes()).hexdigest()
            item["content"] = sparse_sha256(cached)
    record_path.write_text(json.dumps(record))
    with caplog.at_level(logging.INFO):
        hit = build(tmp_path / "second")
    assert not hit and "finalize" in ran  # before: a hit, the forged image restored
    assert sums_ok(tmp_path / "second")
    assert b"TAMPERED!" not in (tmp_path / "second/disk.raw").read_bytes()
    assert "its seal does not match" in caplog.text
    assert build(tmp_path / "third") and sums_ok(tmp_path / "third")  # stored again


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def test_a_miss_makes_room_before_finalize_not_after_it(tmp_path: Path) -> None:
    """With a full cache, the entry a build's store would evict is gone before its
    finalize stage runs (deleted in the background meanwhile), not unlinked after it;
    a hit evicts nothing."""
    config = Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"),
                    storage=Storage(image_cache=ImageCacheConfig(max_count=1)))
    ran: list[str] = []
    salt = ["a"]
    present_in_finalize: list[list[str]] = []
    entries = config.image_cache_dir / "debian-12-minimal"

    @attrs.define
    class Salted(FakeStage):
        def inputs(self, ctx: BuildContext, upstream: Mapping[str, str]) -> dict[str, object]:
            return {**super().inputs(ctx, upstream), "salt": salt[0]}

        def run(self, ctx: BuildContext, inputs: object) -> None:
            if self.name == "finalize":
                present_in_finalize.append(names(entries))
            super().run(ctx, inputs)

    build = builder(config, [Salted(n, ran) for n in STAGES], ran)

    assert not build(tmp_path / "first")
    first = names(entries)
    assert len(first) == 1 and present_in_finalize == [[]]
    salt[0] = "b"
    assert not build(tmp_path / "second")
    assert present_in_finalize[-1] == []  # the old entry went before finalize ran
    second = names(entries)
    assert len(second) == 1 and second != first and sums_ok(tmp_path / "second")
    assert names(config.image_cache_dir / ".tmp") == []  # nothing half-deleted left
    assert build(tmp_path / "third")  # a hit: nothing evicted
    assert names(entries) == second

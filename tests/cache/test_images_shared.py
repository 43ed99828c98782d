"""The image cache across hosts (storage.shared_store): an image one host built is a hit on
another host (its own cache directory, the cluster's seal key) with the same bytes. What
comes from the shared store is checked: the record's seal (a writer of the store without
the key cannot publish an image a host uses), then every file by its SHA256 (a damaged,
partial or replaced object is a miss and is never served); a record naming a path or
another key is removed."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from imagecomposer.cache.images import CacheKey, ImageCache
from imagecomposer.cache.shared import SharedStore
from imagecomposer.foundation.seal import SealKey
from tests.cache.test_images import key_for, outputs


def host(tmp_path: Path, name: str, shared: Path, key: str = "cluster.key") -> ImageCache:
    """A host's image cache: its own directory, the cluster's seal key (a copy of it in
    practice: the same path here), the common shared store."""
    return ImageCache(tmp_path / name / "images", seal_key=SealKey(tmp_path / key),
                      shared=SharedStore(shared))


def built_on_one(tmp_path: Path, project: Path) -> tuple[CacheKey, Path, Path]:
    shared = tmp_path / "shared"
    key = key_for(project)
    built = outputs(tmp_path, "built", size=4 << 20)
    assert host(tmp_path, "one", shared).store(key, built) is not None
    return key, built, shared


def restored(cache: ImageCache, key: CacheKey, out: Path) -> dict[str, bytes] | None:
    entry = cache.lookup(key)
    if entry is None:
        return None
    assert entry.shared
    assert cache.restore(entry, out) is not None
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_an_image_built_on_one_host_is_a_hit_on_another(
        tmp_path: Path, project: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, built, shared = built_on_one(tmp_path, project)
    published = sorted(p.name for p in (shared / "images").rglob("*") if p.is_file())
    assert published == sorted(hashlib.sha256(p.read_bytes()).hexdigest()
                               for p in built.iterdir())
    caplog.set_level(logging.INFO)
    two = host(tmp_path, "two", shared)
    got = restored(two, key, tmp_path / "out")
    assert got == {p.name: p.read_bytes() for p in built.iterdir()}
    assert "taken from the shared store (2 files verified)" in caplog.text
    # sealed into the second host's cache with its own key: the next lookup is local
    again = two.lookup(key)
    assert again is not None and not again.shared
    # a sparse image stays sparse on the way (4 MiB of mostly zeros)
    raw = tmp_path / "out" / "edge.raw"
    assert raw.stat().st_blocks * 512 < raw.stat().st_size // 2


@pytest.mark.parametrize("damage", ["truncated", "replaced", "missing"])
def test_a_damaged_shared_object_is_a_miss_and_is_removed(
        tmp_path: Path, project: Path, damage: str,
        caplog: pytest.LogCaptureFixture) -> None:
    key, built, shared = built_on_one(tmp_path, project)
    victim = next(p for p in (shared / "images").rglob("*") if p.is_file()
                  and p.name == hashlib.sha256((built / "edge.raw").read_bytes()).hexdigest())
    if damage == "truncated":  # a partial copy
        data = victim.read_bytes()
        victim.write_bytes(data[:len(data) // 2])
    elif damage == "replaced":  # other content under the same name
        victim.write_bytes(b"forged image")
    else:
        victim.unlink()
    two = host(tmp_path, "two", shared)
    assert restored(two, key, tmp_path / "out") is None
    assert not (tmp_path / "out").exists()
    assert "missing or damaged" in caplog.text
    assert two.list() == []  # nothing of it entered the second host's cache
    assert not victim.exists()  # the damaged object is gone, a later build publishes it again
    assert "in the shared store is missing or damaged" in two.explain_miss(key)
    # the next build on the second host publishes a good copy again
    two.store(key, built)
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == victim.name
    assert restored(host(tmp_path, "three", shared), key, tmp_path / "out3") == \
        {p.name: p.read_bytes() for p in built.iterdir()}


@pytest.mark.parametrize("forge", ["path", "other key", "not json"])
def test_a_forged_record_is_a_miss(tmp_path: Path, project: Path, forge: str) -> None:
    key, _, shared = built_on_one(tmp_path, project)
    record_path = next((shared / "index" / "images").rglob("*.json"))
    record = json.loads(record_path.read_text())
    if forge == "path":  # a record naming a file outside the entry
        record["files"][0]["name"] = "../../escape"
        record_path.write_text(json.dumps(record))
    elif forge == "other key":  # another image's record copied under this key
        record["digest"] = "0" * 64
        record_path.write_text(json.dumps(record))
    else:
        record_path.write_text("{")
    two = host(tmp_path, "two", shared)
    assert two.lookup(key) is None
    assert not record_path.exists() and two.list() == []
    assert not list(tmp_path.rglob("escape"))


def test_a_record_not_sealed_with_the_hosts_key_is_not_used(
        tmp_path: Path, project: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, built, shared = built_on_one(tmp_path, project)
    # a writer of the store without the key publishes its own image under the same key,
    # consistent in itself: its files by their SHA256, a record naming them
    record_path = next((shared / "index" / "images").rglob("*.json"))
    record = json.loads(record_path.read_text())
    forged = b"forged image, consistent digests"
    digest = hashlib.sha256(forged).hexdigest()
    store = SharedStore(shared)
    store.publish_bytes("images", forged)
    record["files"] = [{"name": "edge.raw", "size": len(forged), "sha256": digest}]
    record_path.write_text(json.dumps(record))
    two = host(tmp_path, "two", shared)
    assert two.lookup(key) is None and two.list() == []
    assert "not sealed with this host's key" in caplog.text
    # a host with another key does not use a good record either, and leaves it
    two.store(key, built)  # a keyholder's build replaces the forged record
    assert json.loads(record_path.read_text())["files"] != record["files"]
    stranger = host(tmp_path, "three", shared, key="other.key")
    assert stranger.lookup(key) is None and stranger.list() == []
    assert record_path.exists()
    assert restored(host(tmp_path, "four", shared), key, tmp_path / "out") == \
        {p.name: p.read_bytes() for p in built.iterdir()}

"""Every cache takes its limits from the global configuration (storage.*_cache) and evicts
by age and by size, least recently used first: images, initramfs, metadata (packages:
tests/packages/test_cache.py, trees: test_trees.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from imagecomposer.cache.images import CacheKey, ImageCache
from imagecomposer.cache.initramfs import InitramfsCache
from imagecomposer.cache.registry import NAMES, Caches
from imagecomposer.config import load_config
from imagecomposer.families.metadata import MetadataStore
from imagecomposer.foundation.errors import InvalidConfig
from imagecomposer.foundation.http import Http
from imagecomposer.foundation.settings import CACHE_NAMES
from imagecomposer.foundation.store import DAY, Limits
from imagecomposer.foundation.store_policy import StoreEntry, select_victims

MIB = 1 << 20


def outputs(tmp: Path, name: str, size: int) -> Path:
    out = tmp / name
    out.mkdir()
    (out / "img.raw").write_bytes(os.urandom(size))
    return out


def key(name: str, n: int):  # type: ignore[no-untyped-def]
    return CacheKey(name, f"{n:064x}", (("lock", f"{n:064x}"),))


def test_image_cache_evicts_by_size_and_age(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images", max_count=10, max_size_gb=5 * MIB / 1024**3,
                       retention_days=30)
    keys = [key("a", 1), key("b", 2), key("a", 3)]
    for i, k in enumerate(keys):
        cache.store(k, outputs(tmp_path, f"o{i}", 2 * MIB))
        time.sleep(0.01)
    # 3 x 2 MiB do not fit 5 MiB: the least recently used went, whatever its image name
    assert {e.digest for e in cache.list()} == {keys[1].digest, keys[2].digest}
    cache.storage.touch([f"b/{keys[1].digest}"], when=time.time() - 31 * DAY)
    assert [p.name for p in cache.prune()] == [keys[1].digest]
    assert [e.digest for e in cache.list()] == [keys[2].digest]


def test_initramfs_cache_evicts_by_count_size_and_age(tmp_path: Path) -> None:
    cache = InitramfsCache(tmp_path / "initramfs",
                           limits=Limits(max_count=2, max_bytes=3 * MIB, max_age=30 * DAY))

    def images(size: int) -> dict[str, bytes]:
        return {"initrd.img-6.1": os.urandom(size)}

    for n in range(3):  # count: 2
        cache.store(f"k{n}", images(MIB // 4))
        time.sleep(0.01)
    assert [e.key for e in cache.storage.entries()] == ["k1", "k2"]
    assert cache.load("k1", ["initrd.img-6.1"]) is not None  # a use
    cache.store("big", images(2 * MIB))  # size: k2 is now the least recently used
    assert [e.key for e in cache.storage.entries()] == ["big", "k1"]
    cache.storage.touch(["k1"], when=time.time() - 31 * DAY)
    cache.storage.prune()
    assert [e.key for e in cache.storage.entries()] == ["big"]
    # an entry without every image asked for is not used (nor discarded)
    assert cache.load("big", ["initrd.img-6.1", "initrd.img-6.2"]) is None
    assert [e.key for e in cache.storage.entries()] == ["big"]


def test_metadata_cache_evicts_by_size_and_age_and_verifies(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "metadata", Http(()),
                          limits=Limits(max_bytes=3 * MIB, max_age=30 * DAY))
    rpm = MetadataStore(tmp_path / "metadata", Http(()), prefix="rpm/")
    first = store.put_index(os.urandom(MIB), ".xz")
    time.sleep(0.01)
    second = rpm.put_index(os.urandom(MIB), "-primary.xml.zst")
    time.sleep(0.01)
    third = store.put_index(os.urandom(2 * MIB), ".xz")  # 4 MiB: the oldest goes
    assert not first.exists() and second.exists() and third.exists()
    assert second.parent == tmp_path / "metadata/rpm/by-hash"  # one store, both families
    storage = store.storage
    key = f"rpm/by-hash/{second.name}"
    storage.touch([key], when=time.time() - 31 * DAY)
    assert [e.key for e in storage.prune().entries] == [key]
    third.write_bytes(b"damaged")  # prune with verification: it is not what its name says
    removal = storage.prune(verify=True)
    assert [e.path for e in removal.entries] == [third] and "SHA256" in removal.damaged[0][1]


def test_config_file_limits_reach_every_cache(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.yml"
    path.write_text(
        f"core: {{cache_dir: {tmp_path / 'cache'}}}\n"
        "storage:\n"
        "  package_cache: {max_size_gb: 1, retention_days: 2}\n"
        "  image_cache: {max_count: 3, max_size_gb: 4, retention_days: 5}\n"
        "  tree_cache: {max_count: 6, max_size_gb: 7, retention_days: 8}\n"
        "  initramfs_cache: {max_count: 9, max_size_gb: 10, retention_days: 11}\n"
        "  metadata_cache: {enabled: false, max_size_gb: 12, retention_days: 13}\n")
    config = load_config(path, environ={"HOME": str(tmp_path)}).config
    caches = Caches(config)
    gib = 1024**3
    assert caches.storage("packages").limits == Limits(gib, 2 * DAY)
    assert caches.storage("images").limits == Limits(4 * gib, 5 * DAY, 3)
    assert caches.storage("trees").limits == Limits(7 * gib, 8 * DAY, 6)
    assert caches.storage("initramfs").limits == Limits(10 * gib, 11 * DAY, 9)
    assert caches.storage("metadata").limits == Limits(12 * gib, 13 * DAY)
    listing = caches.list()
    assert [c.name for c in listing.caches] == list(NAMES) == list(CACHE_NAMES)
    assert listing["images"].limit_text == "3 per image, 4.0 GiB, 5 days"
    assert listing["metadata"].limit_text == "disabled; 12.0 GiB, 13 days"
    assert not (tmp_path / "cache").exists()  # listing creates nothing
    path.write_text("storage:\n  tree_cache: {max_count: -1, max_size: 3}\n")
    with pytest.raises(InvalidConfig) as info:
        load_config(path, environ={"HOME": str(tmp_path)})
    text = str(info.value)
    assert "storage.tree_cache.max_count" in text and "max_size" in text


def test_metadata_cache_disabled_is_a_throwaway_store(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(f"core: {{cache_dir: {tmp_path / 'cache'}, work_dir: {tmp_path / 'w'}}}\n"
                    "storage: {metadata_cache: {enabled: false}}\n")
    config = load_config(path, environ={"HOME": str(tmp_path)}).config
    store = MetadataStore.for_config(config, Http(()))
    assert store.root.parent == tmp_path / "w" and not store.root.exists()
    written = store.put_index(b"index", ".xz")
    assert written.is_file() and not (tmp_path / "cache").exists()
    root = store.root
    del store
    assert not root.exists()  # removed with the object


def test_metadata_entries_of_the_older_layout_are_pruned_as_unreadable(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "metadata", Http(()))
    docs, solv = tmp_path / "metadata/docs", tmp_path / "metadata/solv"
    docs.mkdir(parents=True)
    solv.mkdir(parents=True)
    (docs / ("a" * 32)).write_bytes(b"InRelease of an older version")
    (docs / ("a" * 32 + ".json")).write_text("{not json")
    (solv / ("b" * 40 + ".solv")).write_bytes(b"pool")
    store.put_index(b"index", ".xz")  # a current entry: kept
    removal = store.storage.prune(verify=True)
    assert sorted(e.key for e in removal.entries) == [
        f"docs/{'a' * 32}", f"docs/{'a' * 32}.json", f"solv/{'b' * 40}.solv"]
    assert all(p.startswith("unreadable") for _, p in removal.damaged)
    assert [e.key.split("/")[0] for e in store.storage.entries()] == ["by-hash"]


def test_an_incoming_entry_takes_a_place_in_its_group() -> None:
    """select_victims(incoming=...): what storing that entry will evict, chosen before it
    is written; an entry already there takes no new place."""
    entries = [StoreEntry(f"{g}/{i}", Path(f"/c/{g}/{i}"), 10, 0.0, 100.0 + i)
               for g in ("a", "b") for i in range(3)]
    limits = Limits(max_count=3)

    def chosen(incoming: str | None) -> list[str]:
        return [e.key for e in select_victims(entries, limits, 200.0, incoming=incoming,
                                              group=lambda k: k.split("/")[0])]

    assert chosen(None) == []
    assert chosen("a/new") == ["a/0"]  # the least recently used of its group only
    assert chosen("b/new") == ["b/0"]
    assert chosen("a/2") == []  # already there
    limits = Limits(max_count=1)  # no place left for anything of "a" but the incoming
    assert set(chosen("a/new")) == {"a/0", "a/1", "a/2", "b/0", "b/1"}

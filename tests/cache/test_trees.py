"""The installed-tree cache on the store primitive: faithful copies, atomic stores, dead
writers' leftovers, and pruning by count, size and age (it was never pruned before)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import attrs
import pytest

from imagecomposer.cache import trees
from imagecomposer.cache.registry import Caches
from imagecomposer.cache.trees import TreeCache
from imagecomposer.config.model import Config, Core, Storage, TreeCacheConfig
from imagecomposer.foundation.errors import CacheError
from imagecomposer.foundation.store import DAY, Limits


def make_tree(path: Path, payload: int = 0) -> Path:
    (path / "etc").mkdir(parents=True)
    (path / "etc/os-release").write_text("ID=debian\n")
    (path / "usr/bin").mkdir(parents=True)
    (path / "usr/bin/tool").write_text("x")
    (path / "usr/bin/tool").chmod(0o4755)
    os.link(path / "usr/bin/tool", path / "usr/bin/tool-link")
    (path / "bin").symlink_to("usr/bin")
    if payload:
        (path / "usr/lib").mkdir(parents=True)
        (path / "usr/lib/payload").write_bytes(os.urandom(payload))
    return path


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_store_and_restore(tmp_path: Path) -> None:
    cache = TreeCache(tmp_path / "cache")
    tree = make_tree(tmp_path / "tree")
    assert cache.lookup("k1") is None
    assert not cache.restore("k1", tmp_path / "miss")
    cache.store("k1", tree)
    dest = tmp_path / "work/root"
    assert cache.restore("k1", dest)
    assert (dest / "etc/os-release").read_text() == "ID=debian\n"
    assert (dest / "usr/bin/tool").stat().st_mode & 0o7777 == 0o4755
    assert (dest / "usr/bin/tool").stat().st_ino == (dest / "usr/bin/tool-link").stat().st_ino
    assert (dest / "bin").readlink() == Path("usr/bin")
    (dest / "etc/os-release").write_text("changed\n")  # a restored tree is a copy
    assert (cache.entry("k1") / "tree/etc/os-release").read_text() == "ID=debian\n"
    with pytest.raises(CacheError, match="non-empty"):
        cache.restore("k1", dest)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a tree to another uid")
def test_a_tree_written_in_another_id_space_is_not_used(tmp_path: Path) -> None:
    """A cache directory shared by root and rootless builds: a tree whose root directory
    another uid owns (a rootless build's, seen by root: the user's uid; a root build's,
    seen in a user namespace: nobody) carries owners that are wrong here: a miss."""
    cache = TreeCache(tmp_path / "cache")
    cache.store("k1", make_tree(tmp_path / "tree"))
    os.chown(cache.entry("k1"), 4242, 4242)
    assert cache.lookup("k1") is None
    assert not cache.restore("k1", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    cache.store("k1", make_tree(tmp_path / "tree2"))  # kept, not replaced: no error
    assert cache.entry("k1").stat().st_uid == 4242
    os.chown(cache.entry("k1"), os.geteuid(), os.getegid())
    assert cache.lookup("k1") == cache.entry("k1")


def test_store_is_atomic_and_leftovers_of_dead_writers_go(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    cache = TreeCache(tmp_path / "cache")
    tree = make_tree(tmp_path / "tree")

    def interrupted(source: Path, dest: Path) -> None:
        dest.mkdir()
        (dest / "half").write_text("")
        raise KeyboardInterrupt

    monkeypatch.setattr(trees, "copy_tree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.store("k2", tree)
    # no partial entry, nothing in the staging area
    assert cache.storage.entries() == [] and cache.lookup("k2") is None
    assert list((tmp_path / "cache/.tmp").iterdir()) == []
    # the staging area of a killed process (its pid is gone) goes on the next store
    stale = tmp_path / "cache/.tmp" / f"{dead_pid()}-0123abcd"
    (stale / "entry/etc").mkdir(parents=True)
    monkeypatch.undo()
    cache.store("k3", tree)
    assert not stale.exists()
    assert cache.lookup("k3") is not None


def test_pruned_by_count_least_recently_used_first(tmp_path: Path) -> None:
    cache = TreeCache(tmp_path / "cache", limits=Limits(max_count=2))
    tree = make_tree(tmp_path / "tree")
    for i, key in enumerate(("a", "b")):
        cache.store(key, tree)
        cache.storage.touch([f"v2-{key}"], when=1000 + i)
    assert cache.restore("a", tmp_path / "r1")  # now "b" is the least recently used
    cache.store("c", tree)  # the third: one must go
    assert cache.lookup("b") is None and cache.lookup("a") and cache.lookup("c")


def test_pruned_by_size_and_age(tmp_path: Path) -> None:
    mib = 1 << 20
    cache = TreeCache(tmp_path / "cache", limits=Limits(max_bytes=5 * mib, max_age=14 * DAY))
    for key in ("a", "b", "c"):
        cache.store(key, make_tree(tmp_path / f"tree-{key}", payload=2 * mib))
        time.sleep(0.01)
    # three 2 MiB trees do not fit 5 MiB: the oldest went when the third arrived
    assert [e.key for e in cache.storage.entries()] == ["v2-b", "v2-c"]
    assert sum(e.size for e in cache.storage.entries()) <= 5 * mib
    cache.storage.touch(["v2-b"], when=time.time() - 15 * DAY)  # unused for 15 days
    assert [p.name for p in cache.prune(dry_run=True)] == ["v2-b"] and cache.lookup("b")
    assert [p.name for p in cache.prune()] == ["v2-b"] and cache.lookup("b") is None


def test_a_tree_being_restored_is_not_evicted(tmp_path: Path) -> None:
    cache = TreeCache(tmp_path / "cache", limits=Limits(max_count=1))
    cache.store("a", make_tree(tmp_path / "tree"))
    with cache.storage.using("v2-a") as entry:
        assert entry is not None
        removal = cache.storage.clean()
        assert removal.entries == () and [e.key for e in removal.in_use] == ["v2-a"]
        assert (entry / "tree/etc/os-release").is_file()
    assert [e.key for e in cache.storage.clean().entries] == ["v2-a"]


def test_config_limits_reach_the_tree_cache_and_cache_list(tmp_path: Path) -> None:
    config = Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"),
                    storage=Storage(tree_cache=TreeCacheConfig(max_count=1, max_size_gb=0.5,
                                                               retention_days=3)))
    cache = TreeCache.for_config(config)
    assert cache.storage.limits == Limits(max_bytes=512 * 1024**2, max_age=3 * DAY,
                                          max_count=1)
    cache.store("a", make_tree(tmp_path / "tree"))
    cache.store("b", make_tree(tmp_path / "tree2"))
    listed = Caches(config).list()["trees"]
    assert [e.key for e in listed.entries] == ["v2-b"]
    assert listed.limit_text == "1 entry, 512.0 MiB, 3 days"
    off = TreeCache.for_config(attrs.evolve(config, storage=Storage(
        tree_cache=TreeCacheConfig(enabled=False))))
    assert off.store("c", make_tree(tmp_path / "tree3")) is None and off.lookup("b") is None


def test_a_read_only_tree_is_stored_by_hard_links(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Storing the installed tree copied it (2-3 s of a cold build of the minimal image,
    issue 16) although the pipeline only ever reads it (it configures a copy): its files
    are now hard-linked into the entry. A write into the source anyway changes the entry,
    and the restore's check against the sealed manifest refuses it."""
    cache = TreeCache(tmp_path / "cache")
    tree = make_tree(tmp_path / "tree", payload=4096)
    cache.store("k1", tree, link=True)
    stored = cache.entry("k1") / "tree"
    assert (stored / "usr/lib/payload").stat().st_ino == (tree / "usr/lib/payload").stat().st_ino
    assert (stored / "usr/bin/tool").stat().st_ino == (stored / "usr/bin/tool-link").stat().st_ino
    dest = tmp_path / "work/root"
    assert cache.restore("k1", dest)  # a copy, checked against the manifest
    assert (dest / "usr/lib/payload").read_bytes() == (tree / "usr/lib/payload").read_bytes()
    assert (dest / "usr/lib/payload").stat().st_ino != (tree / "usr/lib/payload").stat().st_ino
    st = (tree / "etc/os-release").stat()
    with (tree / "etc/os-release").open("r+b") as f:  # same size, time put back
        f.write(b"ID=evil!")
    os.utime(tree / "etc/os-release", ns=(st.st_atime_ns, st.st_mtime_ns))
    with caplog.at_level("WARNING"):
        assert not cache.restore("k1", tmp_path / "work/again")
    assert "etc/os-release" in caplog.text
    assert cache.lookup("k1") is None


def test_linking_falls_back_to_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where hard links cannot be made (another filesystem), the tree is copied."""
    cache = TreeCache(tmp_path / "cache")
    tree = make_tree(tmp_path / "tree")
    monkeypatch.setattr(trees, "link_tree", lambda source, dest: False)
    cache.store("k1", tree, link=True)
    stored = cache.entry("k1") / "tree/usr/bin/tool"
    assert stored.stat().st_ino != (tree / "usr/bin/tool").stat().st_ino
    assert cache.restore("k1", tmp_path / "work/root")

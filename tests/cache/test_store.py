"""The store primitive every cache stands on (imagecomposer.foundation.store): nothing
created before a write, atomic entries, dead writers' leftovers, verification on read,
eviction by age, count and size (least recently used first), entries in use, statistics."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from imagecomposer.foundation.errors import CacheNotWritable
from imagecomposer.foundation.store import (
    DAY,
    Limits,
    Store,
    StoreStats,
    check_key,
    select_victims,
)


def blob(size: int) -> bytes:
    return os.urandom(size)


def store(tmp_path: Path, **kw: object) -> Store:
    return Store(tmp_path / "root", patterns=("*/*",), what="test cache", **kw)  # type: ignore[arg-type]


def test_nothing_exists_before_the_first_write(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.entries() == [] and s.stats() == StoreStats() and s.leftovers() == []
    assert s.get("a/b") is None and s.prune().entries == () and s.clean().entries == ()
    s.touch(["a/b"])  # a use of nothing: no bookkeeping
    assert not (tmp_path / "root").exists()
    with s.using("a/b") as path:
        assert path is None


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", ".tmp/x", "a/.hidden", "a//b"])
def test_keys_cannot_reach_outside_or_into_the_bookkeeping(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


def test_write_file_and_directory_entries_with_statistics(tmp_path: Path) -> None:
    s = store(tmp_path)
    before = time.time()
    s.write("f/one", lambda p: p.write_bytes(blob(10_000)), meta={"label": "one"})

    def tree(p: Path) -> None:
        (p / "sub").mkdir(parents=True)
        (p / "sub/data").write_bytes(blob(20_000))
        os.link(p / "sub/data", p / "sub/again")  # counted once

    s.write("d/two", tree)
    entries = {e.key: e for e in s.entries()}
    assert set(entries) == {"f/one", "d/two"}
    assert entries["f/one"].label == "one" and entries["d/two"].label == "d/two"
    assert 10_000 <= entries["f/one"].size < 20_000
    assert 20_000 <= entries["d/two"].size < 40_000  # the hard link is not counted twice
    assert all(before <= e.created <= e.last_used <= time.time() for e in entries.values())
    stats = s.stats()
    assert stats.count == 2 and stats.bytes == sum(e.size for e in entries.values())
    assert stats.oldest_created == entries["f/one"].created
    s.touch(["f/one"], when=before - 5)
    stats = s.stats()
    assert stats.oldest_use == before - 5 and stats.newest_use == entries["d/two"].last_used
    assert "StoreEntry one" in repr(entries["f/one"])


def test_a_failed_write_leaves_nothing_and_replacing_is_atomic(tmp_path: Path) -> None:
    s = store(tmp_path)

    def half(p: Path) -> None:
        p.mkdir()
        (p / "part").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.write("a/b", half)
    assert s.entries() == [] and list((tmp_path / "root/.tmp").iterdir()) == []
    s.write("a/b", lambda p: (p.mkdir(), (p / "v").write_text("1")))
    s.write("a/b", lambda p: (p.mkdir(), (p / "v").write_text("2")))  # replaces
    assert (s.path("a/b") / "v").read_text() == "2"
    s.write("a/b", lambda p: (p.mkdir(), (p / "v").write_text("3")), replace=False)  # kept
    assert (s.path("a/b") / "v").read_text() == "2"
    assert [e.key for e in s.entries()] == ["a/b"]
    assert list((tmp_path / "root/.tmp").iterdir()) == []


def test_a_killed_writer_leaves_a_leftover_that_the_next_write_removes(
        tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write("a/keep", lambda p: p.write_bytes(b"x"))
    script = (f"import os, signal\n"
              f"from pathlib import Path\n"
              f"from imagecomposer.foundation.store import Store\n"
              f"def fill(p):\n"
              f"    p.mkdir(); (p / 'half').write_bytes(b'x' * 4096)\n"
              f"    os.kill(os.getpid(), signal.SIGKILL)\n"
              f"Store(Path({str(tmp_path / 'root')!r}), patterns=('*/*',)).write('a/b', fill)\n")
    done = subprocess.run([sys.executable, "-c", script], check=False)
    assert done.returncode == -9
    left = s.leftovers()
    assert len(left) == 1 and (left[0] / "entry/half").is_file()
    assert [e.key for e in s.entries()] == ["a/keep"]  # never visible as an entry
    mine = tmp_path / "root/.tmp" / f"{os.getpid()}-abcdef"  # a live writer's area: kept
    mine.mkdir()
    s.write("a/c", lambda p: p.write_bytes(b"y"))
    assert not left[0].exists() and mine.exists()
    old = time.time() - 2 * DAY  # a day old: the pid was reused, it is a leftover too
    os.utime(mine, (old, old))
    removal = s.prune()
    assert removal.leftovers == (mine,) and not mine.exists()


def test_get_verifies_and_discards_a_damaged_entry(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    def verify(path: Path) -> str | None:
        return None if path.read_bytes() == b"good" else "not good"

    s = store(tmp_path, verify=verify)
    s.write("a/b", lambda p: p.write_bytes(b"good"))
    assert s.get("a/b") == s.path("a/b")
    s.path("a/b").write_bytes(b"evil")
    with caplog.at_level(logging.WARNING, "imagecomposer.cache"):
        assert s.get("a/b") is None
    assert f"test cache entry {s.path('a/b')} is damaged (not good); discarding it" \
        in caplog.text
    assert not s.path("a/b").exists() and s.entries() == []
    s.write("a/c", lambda p: p.write_bytes(b"other"))
    assert s.get("a/c", check=lambda p: None) is not None  # a per-call check wins
    # prune(verify=True) checks everything; without it, damage is not looked for
    assert s.prune().entries == ()
    removal = s.prune(dry_run=True, verify=True)
    assert [e.key for e in removal.entries] == ["a/c"] and removal.damaged[0][1] == "not good"
    assert s.path("a/c").exists()


def test_eviction_by_age_count_and_size_least_recently_used_first(tmp_path: Path) -> None:
    s = store(tmp_path, group=lambda key: key.split("/")[0])
    now = time.time()
    for i, key in enumerate(["x/1", "x/2", "x/3", "y/1", "y/2"]):
        s.write(key, lambda p: p.write_bytes(blob(8192)))
        s.touch([key], when=now - 100 + i)
    s.touch(["x/1"], when=now - 40 * DAY)
    entries = s.entries()
    size = entries[0].size

    def victims(limits: Limits, keep: tuple[str, ...] = ()) -> list[str]:
        return [e.key for e in select_victims(entries, limits, now, keep=keep,
                                              group=s.group)]

    assert victims(Limits(max_age=30 * DAY)) == ["x/1"]
    assert victims(Limits(max_count=1)) == ["x/1", "x/2", "y/1"]  # per group, LRU first
    assert victims(Limits(max_bytes=3 * size)) == ["x/1", "x/2"]  # LRU first until it fits
    assert victims(Limits(max_bytes=3 * size), keep=("x/2",)) == ["x/1", "x/3"]
    assert victims(Limits(max_age=30 * DAY, max_bytes=2 * size)) == ["x/1", "x/2", "x/3"]
    s.limits = Limits(max_age=30 * DAY, max_bytes=3 * size)
    assert [e.key for e in s.prune(dry_run=True).entries] == ["x/1", "x/2"]
    assert len(s.entries()) == 5  # a dry run removes nothing
    removal = s.prune()
    assert [e.key for e in removal.entries] == ["x/1", "x/2"] and removal.bytes == 2 * size
    assert [e.key for e in s.entries()] == ["x/3", "y/1", "y/2"]
    index = json.loads((tmp_path / "root/.store.json").read_text())["entries"]
    assert set(index) == {"x/3", "y/1", "y/2"}  # the bookkeeping follows


def test_an_entry_in_use_is_not_evicted(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write("a/b", lambda p: (p.mkdir(), (p / "f").write_text("x")))
    s.write("a/c", lambda p: p.write_text("y"))
    with s.using("a/b") as path:
        assert path == s.path("a/b")
        removal = s.clean()
        assert [e.key for e in removal.entries] == ["a/c"]
        assert [e.key for e in removal.in_use] == ["a/b"]
        assert (path / "f").read_text() == "x"
        assert s.remove("a/b") is False
    assert s.remove("a/b") is True and s.entries() == []


def test_remove_spares_a_replaced_entry(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write("a/b", lambda p: p.write_text("old"))
    inode = s.path("a/b").stat().st_ino
    s.write("a/b", lambda p: p.write_text("new, written by another build"))
    assert s.remove("a/b", inode=inode) is False and s.path("a/b").read_text().startswith("new")


def test_concurrent_writers_and_touches_keep_the_bookkeeping_whole(tmp_path: Path) -> None:
    s = store(tmp_path)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                s.write(f"t{n}/{i}", lambda p: p.write_bytes(b"x" * 100))
                s.touch([f"t{n}/{i}"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    index = json.loads((tmp_path / "root/.store.json").read_text())["entries"]
    assert len(index) == len(s.entries()) == 80


def test_an_unwritable_directory_is_one_clear_error(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    s = Store(tmp_path / "root", what="package cache", setting="core.cache_dir")
    real = Path.mkdir

    def denied(self: Path, *args: object, **kw: object) -> None:
        if self == tmp_path / "root":
            raise PermissionError(13, "Permission denied", str(self))
        real(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(CacheNotWritable) as info:
        s.write("a", lambda p: p.write_text("x"))
    message = str(info.value)
    assert message.startswith("Permission denied: cannot write the package cache in ")
    assert str(tmp_path / "root") in message and "set core.cache_dir" in message


def test_entries_written_by_an_older_version_are_listed_then_recorded(tmp_path: Path) -> None:
    s = store(tmp_path, limits=Limits(max_age=30 * DAY))
    old = tmp_path / "root/v1/tree"  # written before the bookkeeping existed
    (old / "etc").mkdir(parents=True)
    (old / "etc/data").write_bytes(blob(9000))
    then = time.time() - 3 * DAY
    os.utime(old, (then, then))
    (entry,) = s.entries()
    assert entry.key == "v1/tree" and entry.last_used == entry.created == then
    assert entry.size >= 9000
    assert s.prune().entries == ()  # within the age limit: kept, and now recorded
    index = json.loads((tmp_path / "root/.store.json").read_text())["entries"]
    assert index["v1/tree"]["last_used"] == then and index["v1/tree"]["size"] == entry.size
    os.utime(old, (then - 40 * DAY, then - 40 * DAY))  # the record, not the mtime, counts
    assert s.prune().entries == ()

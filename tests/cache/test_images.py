"""Image cache: hit, miss with the changed input named, eviction, atomicity, ≤ 1 s restores."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from imagecomposer.cache import image_files, images
from imagecomposer.cache.images import CacheKey, ImageCache
from imagecomposer.foundation import cleanup
from imagecomposer.foundation.errors import CacheError
from imagecomposer.foundation.fingerprint import fingerprint, path_digest
from imagecomposer.foundation.seal import SealKey

SPEC = json.dumps({"image": {"name": "edge"}, "customizations": {"hostname": "a"}},
                  sort_keys=True)


def image_key(spec: str, files: list[Path], lock: str, tool: str,
              base: Path | None = None) -> CacheKey:
    """A key the way the pipeline makes one: a fingerprint per named input, and one over all
    of them (the pipeline names the fields of the stages' typed inputs instead)."""
    inputs = {"spec": fingerprint(spec), "lock": lock, "tool version": tool}
    for path in files:
        inputs[path.relative_to(base).as_posix() if base else str(path)] = path_digest(path)
    pairs = tuple(sorted(inputs.items()))
    return CacheKey(json.loads(spec)["image"]["name"], fingerprint(pairs), pairs)


def key_for(project: Path, spec: str = SPEC, lock: str = "aa" * 32,
            tool: str = "0.1.0") -> CacheKey:
    return image_key(spec, [project / "files/motd", project / "post.sh"], lock, tool,
                     base=project)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def outputs(tmp: Path, name: str, size: int = 1 << 20) -> Path:
    out = tmp / name
    out.mkdir()
    with (out / "edge.raw").open("wb") as f:
        f.truncate(size)
        f.write(b"image " + name.encode())
    (out / "SHA256SUMS").write_text("x  edge.raw\n")
    return out


def test_hit_restores_identical_outputs(tmp_path: Path, project: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    cache = ImageCache(tmp_path / "cache")
    key = key_for(project)
    assert cache.lookup(key) is None
    assert cache.explain_miss(key) == "image cache miss: no cached image for 'edge'"
    built = outputs(tmp_path, "built")
    stored = cache.store(key, built)
    assert stored is not None and stored.name == "edge" and len(stored.files) == 2
    caplog.set_level(logging.INFO)
    again = key_for(project)
    entry = cache.lookup(again)
    assert entry is not None and entry.digest == key.digest
    out = tmp_path / "output"
    (out).mkdir()
    (out / "old-file").write_text("previous build")
    restored = cache.restore(entry, out)
    assert sorted(p.name for p in out.iterdir()) == ["SHA256SUMS", "edge.raw"]
    assert [p.read_bytes() for p in sorted(restored)] == [
        (built / "SHA256SUMS").read_bytes(), (built / "edge.raw").read_bytes()]
    assert "image cache hit" in caplog.text
    assert not [p for p in tmp_path.iterdir() if ".staging" in p.name]


@pytest.mark.parametrize(("change", "message"), [
    ("motd", "input 'files/motd' changed"),
    ("script", "input 'post.sh' changed"),
    ("spec", "input 'spec' changed"),
    ("lock", "input 'lock' changed"),
    ("tool", "input 'tool version' changed"),
])
def test_changed_input_is_named(tmp_path: Path, project: Path, change: str,
                                message: str) -> None:
    cache = ImageCache(tmp_path / "cache")
    cache.store(key_for(project), outputs(tmp_path, "built"))
    spec, lock, tool = SPEC, "aa" * 32, "0.1.0"
    if change == "motd":
        (project / "files/motd").write_text("changed\n")
    elif change == "script":
        (project / "post.sh").write_text("#!/bin/sh\necho bye\n")
    elif change == "spec":
        spec = SPEC.replace('"a"', '"b"')
    elif change == "lock":
        lock = "bb" * 32
    else:
        tool = "0.2.0"
    key = key_for(project, spec, lock, tool)
    assert cache.lookup(key) is None
    assert cache.explain_miss(key) == f"image cache miss: {message}"


def test_directory_inputs_and_added_files(tmp_path: Path, project: Path) -> None:
    tree = project / "files"
    before = path_digest(tree)
    (tree / "sub").mkdir()
    assert path_digest(tree) != before
    (tree / "sub/x").write_text("x")
    assert path_digest(tree) != before
    assert path_digest(project / "nope") == "missing"
    cache = ImageCache(tmp_path / "cache")
    cache.store(key_for(project), outputs(tmp_path, "built"))
    key = image_key(SPEC, [project / "files/motd", project / "post.sh", tree], "aa" * 32,
                    "0.1.0", base=project)
    assert cache.explain_miss(key) == "image cache miss: input 'files' added"


def test_lru_eviction_per_name(tmp_path: Path, project: Path) -> None:
    cache = ImageCache(tmp_path / "cache", max_count=2)
    keys = [key_for(project, lock=f"{i:064x}") for i in range(3)]
    for i, key in enumerate(keys):
        cache.store(key, outputs(tmp_path, f"b{i}"))
        entry = cache.lookup(key)
        assert entry is not None
        cache.storage.touch([f"edge/{key.digest}"], when=1000 + i)  # its last use
    # keys[0] was evicted when keys[2] arrived; now use keys[1] so keys[2] is the LRU one
    assert cache.lookup(keys[0]) is None
    entry1 = cache.lookup(keys[1])
    assert entry1 is not None
    cache.restore(entry1, tmp_path / "out")
    other = image_key(SPEC.replace("edge", "other"), [], "cc" * 32, "0.1.0")
    cache.store(other, outputs(tmp_path, "o"))
    cache.store(key_for(project, lock="ff" * 32), outputs(tmp_path, "b3"))
    names = [(e.name, e.digest) for e in cache.list()]
    assert (("edge", keys[1].digest) in names and ("edge", keys[2].digest) not in names
            and ("other", other.digest) in names and len(names) == 3)


def test_store_is_atomic_and_modified_entries_are_dropped(tmp_path: Path, project: Path,
                                                          fake_tool: object) -> None:
    cache = ImageCache(tmp_path / "cache")
    key = key_for(project)
    fake_tool("cp", "echo 'cp: error writing: Input/output error' >&2; exit 1")  # type: ignore[operator]
    with pytest.MonkeyPatch.context() as patch:  # no hard link either: the copy fails
        patch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError("EXDEV")))
        with pytest.raises(CacheError, match="cannot store image"):
            cache.store(key, outputs(tmp_path, "built"))
    assert cache.list() == [] and not (tmp_path / "cache/edge").exists()
    assert not list((tmp_path / "cache/.tmp").iterdir())  # no staging area left behind
    os.environ["PATH"] = os.environ["PATH"].split(os.pathsep, 1)[1]  # drop the fake cp
    entry = cache.store(key, outputs(tmp_path, "built2"))
    assert entry is not None
    raw = entry.path / "files/edge.raw"
    assert raw.stat().st_mode & 0o222 == 0  # stored read-only
    raw.chmod(0o644)
    with raw.open("r+b") as f:
        f.write(b"CORRUPT")
    assert cache.lookup(key) is None
    assert not entry.path.exists()


def test_store_links_the_outputs_instead_of_copying_them(tmp_path: Path,
                                                         project: Path) -> None:
    """Storing copied the outputs (a 2 GiB raw image: seconds, and its data twice on
    disk); a filesystem without reflinks gets a hard link of the read-only file."""
    cache = ImageCache(tmp_path / "cache")
    built = outputs(tmp_path, "built", size=2 << 30)
    entry = cache.store(key_for(project), built)
    assert entry is not None
    stored, output = entry.path / "files/edge.raw", built / "edge.raw"
    same_inode = stored.stat().st_ino == output.stat().st_ino
    reflinked = subprocess.run(["cp", "--reflink=always", output, tmp_path / "probe"],
                               capture_output=True, check=False).returncode == 0
    assert same_inode or reflinked
    assert stored.stat().st_mode & 0o222 == 0
    found = cache.lookup(key_for(project))
    assert found is not None
    assert cache.restore(found, tmp_path / "out") is not None
    assert (tmp_path / "out/edge.raw").read_bytes()[:32] == output.read_bytes()[:32]


def test_prune_clean_and_disabled(tmp_path: Path, project: Path) -> None:
    cache = ImageCache(tmp_path / "cache", max_count=1)
    cache.store(key_for(project), outputs(tmp_path, "a"))
    stale = tmp_path / f"cache/.tmp/{dead_pid()}-abc"  # a store that was killed
    stale.mkdir()
    assert cache.prune(dry_run=True) == [stale] and stale.exists()
    assert cache.prune() == [stale] and not stale.exists()
    assert len(cache.clean(dry_run=True)) == 1 and len(cache.list()) == 1
    cache.clean()
    assert cache.list() == []
    off = ImageCache(tmp_path / "cache", enabled=False)
    assert off.store(key_for(project), outputs(tmp_path, "b")) is None
    assert off.lookup(key_for(project)) is None
    assert off.explain_miss(key_for(project)) == "image cache disabled"


def test_identical_rebuild_under_one_second(tmp_path: Path, project: Path) -> None:
    """Key computation + lookup + restore of a 2 GiB sparse image with some data."""
    cache = ImageCache(tmp_path / "cache")
    built = outputs(tmp_path, "built", size=2 << 30)
    with (built / "edge.raw").open("r+b") as f:
        f.seek(1 << 30)
        f.write(os.urandom(8 << 20))
    cache.store(key_for(project), built)
    started = time.monotonic()
    entry = cache.lookup(key_for(project))
    assert entry is not None
    cache.restore(entry, tmp_path / "out")
    elapsed = time.monotonic() - started
    assert (tmp_path / "out/edge.raw").stat().st_size == 2 << 30
    assert elapsed <= 1.0, f"identical rebuild took {elapsed:.2f} s"


def tamper_keeping_mtime(path: Path, offset: int, data: bytes) -> None:
    st = path.stat()
    path.chmod(0o644)
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


@pytest.mark.parametrize("where", ["data", "hole"])
def test_tampered_file_with_its_mtime_kept_is_a_miss(
        tmp_path: Path, project: Path, where: str, caplog: pytest.LogCaptureFixture) -> None:
    cache = ImageCache(tmp_path / "cache")
    key = key_for(project)
    entry = cache.store(key, outputs(tmp_path, "built", size=8 << 20))
    assert entry is not None
    raw = entry.path / "files/edge.raw"
    # over the data written at the start, or into the sparse part (a hole until now)
    tamper_keeping_mtime(raw, 0 if where == "data" else 5 << 20, b"EVIL")
    with caplog.at_level(logging.WARNING, "imagecomposer.cache"):
        assert cache.lookup(key) is None
    assert f"{entry.path} is damaged (edge.raw does not match its stored digest)" in caplog.text
    assert not entry.path.exists()
    assert cache.explain_miss(key).startswith("image cache miss: the entry for 'edge' was "
                                              "damaged (edge.raw does not match")
    assert cache.store(key, outputs(tmp_path, "rebuilt", size=8 << 20)) is not None
    assert cache.lookup(key) is not None


def test_damaged_entries_are_pruned(tmp_path: Path, project: Path) -> None:
    cache = ImageCache(tmp_path / "cache")
    entry = cache.store(key_for(project), outputs(tmp_path, "built"))
    assert entry is not None
    tamper_keeping_mtime(entry.path / "files/SHA256SUMS", 0, b"y")
    assert cache.prune(dry_run=True) == [entry.path] and entry.path.exists()
    assert cache.prune() == [entry.path] and not entry.path.exists()


def test_leftovers_of_a_killed_store_go_on_the_next_start(tmp_path: Path,
                                                           project: Path) -> None:
    cache = ImageCache(tmp_path / "cache")
    key = key_for(project)
    cache.store(key, outputs(tmp_path, "built"))
    staging = tmp_path / "cache/.tmp"
    killed = staging / f"{dead_pid()}-0a1b2c"
    (killed / "entry/files").mkdir(parents=True)
    (killed / "entry/files/edge.raw").write_bytes(b"half an image")
    (killed / "entry/files/edge.raw").chmod(0o444)
    running = staging / f"{os.getpid()}-3d4e5f"  # alive: kept
    running.mkdir()
    assert ImageCache(tmp_path / "cache").lookup(key) is not None  # a new build starts
    assert not killed.exists() and running.exists()
    old = time.time() - 2 * 86400  # a live pid, but a day old: its pid was reused
    os.utime(running, (old, old))
    assert cache.prune() == [running] and not running.exists()
    assert [e.digest for e in cache.list()] == [key.digest]


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files whose content the image cache hashes from now on (by name)."""
    read: list[str] = []
    original = images.sparse_sha256_of

    def counting(fh: BinaryIO) -> str:
        read.append(Path(fh.name).name)
        return original(fh)

    monkeypatch.setattr(images, "sparse_sha256_of", counting)  # lookups
    monkeypatch.setattr(image_files, "sparse_sha256_of", counting)  # restores
    return read


def test_unchanged_files_are_not_read_again(tmp_path: Path, project: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An identical rebuild read every byte of the cached images again (1.4 s of the 2.9 s
    CLI rebuild of the minimal example, issue 16): a file that is still the inode recorded,
    sealed, when it was last found intact (device, inode, size, mtime, ctime) is trusted;
    `cache prune` still reads everything."""
    cache = ImageCache(tmp_path / "cache")
    key = key_for(project)
    built = outputs(tmp_path, "built", size=8 << 20)
    stored = cache.store(key, built)
    assert stored is not None
    linked = ((stored.path / "files/edge.raw").stat().st_ino
              == (built / "edge.raw").stat().st_ino)
    read = count_reads(monkeypatch)
    first = cache.lookup(key)  # a hard-linked store vouches for its files; a copy is read
    assert first is not None and cache.restore(first, tmp_path / "out") is not None
    assert read == [] if linked else sorted(read) == ["SHA256SUMS", "edge.raw"]
    read.clear()
    for attempt in range(3):  # the restore's hard links move the ctime: recorded again
        entry = cache.lookup(key)
        assert entry is not None, attempt
        assert cache.restore(entry, tmp_path / "out") is not None
    assert read == []
    assert cache.prune() == [] and sorted(read) == ["SHA256SUMS", "edge.raw"]


@pytest.mark.parametrize("when", ["after the store", "after a restore"])
def test_a_recorded_check_does_not_hide_a_write(tmp_path: Path, project: Path, when: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A write through the cached file (its mtime put back) moves its ctime: it is read
    again and refused, whether it was stamped by the store or by a restore."""
    cache = ImageCache(tmp_path / "cache")
    key = key_for(project)
    entry = cache.store(key, outputs(tmp_path, "built", size=8 << 20))
    assert entry is not None
    if when == "after a restore":
        found = cache.lookup(key)
        assert found is not None and cache.restore(found, tmp_path / "out") is not None
    tamper_keeping_mtime(entry.path / "files/edge.raw", 5 << 20, b"EVIL")
    with caplog.at_level(logging.WARNING, "imagecomposer.cache"):
        assert cache.lookup(key) is None
    assert "edge.raw does not match its stored digest" in caplog.text


def test_forged_or_copied_stamps_are_not_trusted(tmp_path: Path, project: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Whoever can write the cache but not read the key cannot vouch for a file they
    changed: stamps sealed with another key, or copied from another entry, are ignored
    and the file is read (then refused)."""
    cache = ImageCache(tmp_path / "cache")
    key, other = key_for(project), key_for(project, tool="9.9")
    entry = cache.store(key, outputs(tmp_path, "built", size=8 << 20))
    second = cache.store(other, outputs(tmp_path, "built2", size=8 << 20))
    assert entry is not None and second is not None
    raw = entry.path / "files/edge.raw"
    tamper_keeping_mtime(raw, 5 << 20, b"EVIL")
    stamps = json.loads((entry.path / "checked.json").read_text())
    stamps["files"]["edge.raw"]["stat"] = image_files.stamp(raw.stat())
    forger = ImageCache(tmp_path / "cache", seal_key=SealKey(tmp_path / "forger.key"))
    (entry.path / "checked.json").write_text(forger._stamp_text(
        f"edge/{key.digest}", stamps["files"]))
    with caplog.at_level(logging.WARNING, "imagecomposer.cache"):
        assert cache.lookup(key) is None
    assert "edge.raw does not match its stored digest" in caplog.text
    # the other entry's (valid) stamps put into a tampered entry of the same outputs
    raw2 = second.path / "files/edge.raw"
    tamper_keeping_mtime(raw2, 5 << 20, b"EVIL")
    theirs = json.loads((second.path / "checked.json").read_text())
    theirs["files"]["edge.raw"]["stat"] = image_files.stamp(raw2.stat())
    (second.path / "checked.json").write_text(cache._stamp_text(
        f"edge/{key.digest}", theirs["files"]))  # sealed, but for another entry
    assert cache.lookup(other) is None


def test_make_room_evicts_in_the_background_what_the_store_would(
        tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a build that missed, the entry its store would evict goes at once: gone for
    every lookup while its files are still being deleted in the background (nothing
    half-deleted under the entry's name), the staging area gone after
    wait_for_removals, and the store after the build has nothing left to delete."""
    cache = ImageCache(tmp_path / "cache", max_count=2)
    keys = [key_for(project, lock=f"{i:064x}") for i in range(3)]
    for i, key in enumerate(keys[:2]):
        cache.store(key, outputs(tmp_path, f"b{i}"))
        cache.storage.touch([f"edge/{key.digest}"], when=1000 + i)
    other = image_key(SPEC.replace("edge", "other"), [], "cc" * 32, "0.1.0")
    cache.store(other, outputs(tmp_path, "o"))
    oldest = cache.storage.path(f"edge/{keys[0].digest}")
    release = threading.Event()
    started: list[Path] = []
    rmtree = shutil.rmtree

    def slow_rmtree(path: Path, ignore_errors: bool = False) -> None:
        started.append(Path(path))
        release.wait(10)
        rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(cleanup.shutil, "rmtree", slow_rmtree)
    try:
        cache.make_room(keys[1])  # already there: takes no new place, nothing evicted
        assert not started and oldest.exists()
        cache.make_room(keys[2])
        assert started and started[0].parent == tmp_path / "cache" / ".tmp"
        assert not oldest.exists() and cache.lookup(keys[0]) is None  # while deleting
        assert {(e.name, e.digest) for e in cache.list()} == {
            ("edge", keys[1].digest), ("other", other.digest)}
        assert cache.lookup(keys[1]) is not None
    finally:
        release.set()
        cleanup.wait_for_removals()
    assert not started[0].exists()
    calls: list[object] = []
    monkeypatch.setattr(cache.storage, "_evict",
                        lambda victims, *a, **k: calls.append(list(victims)) or ([], []))
    cache.store(keys[2], outputs(tmp_path, "b2"))
    assert calls == [[]]  # the store's own prune: no victim left
    assert cache.lookup(keys[2]) is not None


def test_make_room_disabled_or_with_room_left(tmp_path: Path, project: Path) -> None:
    disabled = ImageCache(tmp_path / "off", enabled=False)
    disabled.make_room(key_for(project))
    assert not (tmp_path / "off").exists()
    cache = ImageCache(tmp_path / "cache", max_count=3)
    keys = [key_for(project, lock=f"{i:064x}") for i in range(3)]
    for i, key in enumerate(keys[:2]):
        cache.store(key, outputs(tmp_path, f"b{i}"))
    cache.make_room(keys[2])  # two of three places taken: the third is free
    cleanup.wait_for_removals()
    assert len(cache.list()) == 2

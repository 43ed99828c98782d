"""Derived cache entries are sealed (issue 18: no tampered cache entry is ever used).

Each test plays someone who can write the cache directory but cannot read the sealing key
(a cache on shared disk): they change an entry *and* its digest record consistently, or
copy the record of another entry, the way a careful attacker would, and the next use must
refuse it with a warning and build from scratch. Before the seals every one of these was
used: the image cache trusted the digests stored beside the files, the tree and initramfs
caches checked nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from imagecomposer.cache import manifest
from imagecomposer.cache.images import CacheKey, ImageCache
from imagecomposer.cache.initramfs import InitramfsCache
from imagecomposer.cache.trees import TreeCache
from imagecomposer.compose import initramfs, initramfs_cache
from imagecomposer.compose.composer import Composer
from imagecomposer.config.model import Config, Core
from imagecomposer.foundation.digest import sparse_sha256
from imagecomposer.foundation.seal import SealKey
from imagecomposer.lock import Lock

# --- helpers ---------------------------------------------------------------------------------


def make_tree(path: Path, tool: bytes = b"#!/bin/sh\necho good\n") -> Path:
    (path / "etc").mkdir(parents=True)
    (path / "etc/os-release").write_text("ID=debian\n")
    (path / "usr/bin").mkdir(parents=True)
    (path / "usr/bin/tool").write_bytes(tool)
    (path / "usr/bin/tool").chmod(0o755)
    (path / "bin").symlink_to("usr/bin")
    return path


def keep_times(path: Path, write: Any) -> None:
    """Change ``path`` with ``write(path)``, then put its times back (and its mode)."""
    st = path.stat()
    path.chmod(0o644)
    write(path)
    path.chmod(st.st_mode & 0o7777)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def cached(cache_entry: Path, rel: str) -> Path:
    """The cached copy of ``rel`` wherever the entry keeps it."""
    found = [p for p in cache_entry.rglob(Path(rel).name)
             if p.as_posix().endswith("/" + rel)]
    assert len(found) == 1, found
    return found[0]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# --- installed trees ---------------------------------------------------------------------


def test_a_file_replaced_in_a_cached_tree_is_a_miss(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    cache = TreeCache(tmp_path / "cache")
    cache.store("k1", make_tree(tmp_path / "tree"))
    victim = cached(cache.entry("k1"), "usr/bin/tool")
    evil = b"#!/bin/sh\necho evil\n"
    assert len(evil) == victim.stat().st_size
    keep_times(victim, lambda p: p.write_bytes(evil))  # same size, mtime kept
    dest = tmp_path / "work/root"
    with caplog.at_level(logging.WARNING):
        assert not cache.restore("k1", dest)  # before: restored, evil tool and all
    assert not dest.exists()
    found = warnings(caplog)
    assert len(found) == 1 and "usr/bin/tool: content differs" in found[0]
    assert cache.lookup("k1") is None  # discarded
    cache.store("k1", make_tree(tmp_path / "tree2"))  # the next install stores a good one
    assert cache.restore("k1", dest)
    assert (dest / "usr/bin/tool").read_bytes() == b"#!/bin/sh\necho good\n"


def rewrite_manifest(entry: Path, change: Any) -> None:
    """What a careful attacker does: the manifest made to match the tree they changed."""
    data = json.loads((entry / "manifest").read_bytes())
    change(data["entries"])
    body = manifest.encode(data["entries"])
    (entry / "manifest").write_bytes(body)
    seal = json.loads((entry / "seal.json").read_text())
    seal["manifest"] = hashlib.sha256(body).hexdigest()
    (entry / "seal.json").write_text(json.dumps(seal))


@pytest.mark.parametrize("attack", ["content", "setuid", "added"])
def test_a_tree_and_its_manifest_changed_consistently_are_refused(
        tmp_path: Path, attack: str, caplog: pytest.LogCaptureFixture) -> None:
    cache = TreeCache(tmp_path / "cache")
    cache.store("k1", make_tree(tmp_path / "tree"))
    entry = cache.entry("k1")
    tool = entry / "tree/usr/bin/tool"
    if attack == "content":
        keep_times(tool, lambda p: p.write_bytes(b"#!/bin/sh\necho evil\n"))
        digest = hashlib.sha256(tool.read_bytes()).hexdigest()
        rewrite_manifest(entry, lambda records: [
            r.__setitem__(5, f"{r[5].split(':')[0]}:{digest}") for r in records
            if r[0] == "usr/bin/tool"])
    elif attack == "setuid":
        tool.chmod(0o4755)
        rewrite_manifest(entry, lambda records: [
            r.__setitem__(2, 0o4755) for r in records if r[0] == "usr/bin/tool"])
    else:
        (entry / "tree/etc/sudoers.d").mkdir()
        (entry / "tree/etc/sudoers.d/evil").write_text("ALL ALL=(ALL) NOPASSWD: ALL\n")
        assert manifest.first_difference(
            json.loads((entry / "manifest").read_bytes())["entries"],
            manifest.of_tree(entry / "tree")) == "etc/sudoers.d: not in the sealed manifest"
        rewrite_manifest(entry, lambda records: records.extend(
            r for r in manifest.of_tree(entry / "tree") if r[0].startswith("etc/sudoers.d")))
    with caplog.at_level(logging.WARNING):
        assert not cache.restore("k1", tmp_path / "root")
    assert not (tmp_path / "root").exists()
    assert any("its seal does not match" in w for w in warnings(caplog))


def test_a_tree_entry_copied_from_another_lock_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = TreeCache(tmp_path / "cache")
    cache.store("good", make_tree(tmp_path / "good"))
    cache.store("other", make_tree(tmp_path / "other", tool=b"#!/bin/sh\necho other\n"))
    shutil.rmtree(cache.entry("good"))  # the entry of lock "good" becomes lock "other"'s
    shutil.copytree(cache.entry("other"), cache.entry("good"), symlinks=True)
    with caplog.at_level(logging.WARNING):
        assert not cache.restore("good", tmp_path / "root")
    assert any("its seal does not match" in w for w in warnings(caplog))
    assert cache.restore("other", tmp_path / "root2")  # the original is fine


def test_unsealed_and_foreign_tree_entries_are_discarded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = TreeCache(tmp_path / "cache")
    old = make_tree(tmp_path / "cache/v1-k1")  # written by the previous version
    cache.store("k2", make_tree(tmp_path / "tree"))
    (cache.entry("k2") / "seal.json").unlink()  # the seal removed
    cache.store("k3", make_tree(tmp_path / "tree3"))
    foreign = TreeCache(tmp_path / "cache", seal_key=SealKey(tmp_path / "another.key"))
    with caplog.at_level(logging.WARNING):
        assert not cache.restore("k1", tmp_path / "r1")
        assert not cache.restore("k2", tmp_path / "r2")
        assert not foreign.restore("k3", tmp_path / "r3")  # sealed with another key
    assert not old.exists() and cache.storage.entries() == []
    found = warnings(caplog)
    assert len(found) == 3
    assert "v1-k1 is damaged (not sealed: written by an older version)" in found[0]
    assert "v2-k2 is damaged (not sealed: no seal.json)" in found[1]
    assert "v2-k3 is damaged (its seal does not match: " in found[2]


def test_prune_removes_a_tampered_tree(tmp_path: Path) -> None:
    cache = TreeCache(tmp_path / "cache")
    cache.store("k1", make_tree(tmp_path / "tree"))
    cache.store("k2", make_tree(tmp_path / "tree2"))
    keep_times(cached(cache.entry("k1"), "etc/os-release"),
               lambda p: p.write_text("ID=evil!\n"))
    removal = cache.storage.prune(verify=True)
    assert [(e.key, p) for e, p in removal.damaged] == [
        ("v2-k1", "etc/os-release: content differs from the sealed manifest")]
    assert [e.key for e in cache.storage.entries()] == ["v2-k2"]


def test_the_composer_installs_when_the_cached_tree_was_tampered(tmp_path: Path) -> None:
    config = Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"))
    lock = Lock(os="debian", version="12", arch="amd64", kind="deb", repositories=(),
                packages=())
    installs: list[Path] = []

    class Installing(Composer):
        def install(self, lock: Lock, packages: object, tree: Path,  # type: ignore[override]
                    *, pre_install: object = None) -> None:
            assert not tree.exists() or not any(tree.iterdir())
            installs.append(tree)
            make_tree(tree)

    composer = Installing(config)
    composer.installed_tree(lock, {}, tmp_path / "w1")  # installs, stores
    composer.installed_tree(lock, {}, tmp_path / "w2")  # restored
    assert len(installs) == 1
    victim = cached(composer.cache.entry(composer.tree_key(lock)), "usr/bin/tool")
    keep_times(victim, lambda p: p.write_bytes(b"#!/bin/sh\necho evil\n"))
    tree = composer.installed_tree(lock, {}, tmp_path / "w3")
    assert len(installs) == 2  # installed from the packages
    assert (tree / "usr/bin/tool").read_bytes() == b"#!/bin/sh\necho good\n"
    # stored again, good
    assert composer.cache.restore(composer.tree_key(lock), tmp_path / "w4/root")


# --- images ------------------------------------------------------------------------------------


def image_outputs(tmp: Path, name: str) -> Path:
    out = tmp / name
    out.mkdir()
    with (out / "edge.raw").open("wb") as f:
        f.truncate(4 << 20)
        f.write(b"the good image")
    (out / "SHA256SUMS").write_text("x  edge.raw\n")
    return out


def forge_image(entry: Path, name: str, offset: int, data: bytes) -> None:
    """Rewrite a cached file with its mtime kept and its recorded digests made to match."""
    path = entry / "files" / name
    keep_times(path, lambda p: _write_at(p, offset, data))
    record = json.loads((entry / "entry.json").read_text())
    for f in record["files"]:
        if f["name"] == name:
            f["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            f["content"] = sparse_sha256(path)
    (entry / "entry.json").write_text(json.dumps(record, indent=1))


def _write_at(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


KEY = CacheKey("edge", "aa" * 32, (("lock", "aa" * 32),))
OTHER = CacheKey("edge", "bb" * 32, (("lock", "bb" * 32),))


def test_an_image_and_its_digests_replaced_consistently_are_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = ImageCache(tmp_path / "cache")
    entry = cache.store(KEY, image_outputs(tmp_path, "built"))
    assert entry is not None
    forge_image(entry.path, "edge.raw", 0, b"the EVIL image")
    with caplog.at_level(logging.WARNING):
        assert cache.lookup(KEY) is None  # before: a hit with the forged image
    assert any("its seal does not match" in w for w in warnings(caplog))
    assert not entry.path.exists()
    assert "was damaged (its seal does not match:" in cache.explain_miss(KEY)


def test_an_image_entry_copied_from_another_key_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = ImageCache(tmp_path / "cache")
    good = cache.store(KEY, image_outputs(tmp_path, "good"))
    other = cache.store(OTHER, image_outputs(tmp_path, "other"))
    assert good is not None and other is not None
    shutil.rmtree(good.path)
    shutil.copytree(other.path, good.path)  # key aa now serves bb's outputs, record and all
    with caplog.at_level(logging.WARNING):
        assert cache.lookup(KEY) is None  # before: a hit restoring bb's outputs
    assert any("copied from another entry" in w for w in warnings(caplog))
    assert cache.lookup(OTHER) is not None


def test_unsealed_image_entries_are_discarded(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    cache = ImageCache(tmp_path / "cache")
    entry = cache.store(KEY, image_outputs(tmp_path, "built"))
    assert entry is not None
    record = json.loads((entry.path / "entry.json").read_text())
    del record["seal"]
    record["format"] = 2  # as the previous version wrote it
    (entry.path / "entry.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING):
        assert cache.lookup(KEY) is None
    assert any("(not sealed: written by an older version" in w for w in warnings(caplog))
    assert not entry.path.exists()


def test_an_image_swapped_between_lookup_and_restore_is_not_published(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = ImageCache(tmp_path / "cache")
    stored = cache.store(KEY, image_outputs(tmp_path, "built"))
    assert stored is not None
    entry = cache.lookup(KEY)
    assert entry is not None
    raw = stored.path / "files/edge.raw"
    swapped = raw.with_name("swap")  # another file, same size and mtime, renamed over it
    shutil.copy2(raw, swapped)
    _write_at(swapped, 0, b"the EVIL image")
    os.utime(swapped, ns=(raw.stat().st_atime_ns, raw.stat().st_mtime_ns))
    swapped.replace(raw)
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous").write_text("kept")
    with caplog.at_level(logging.WARNING):
        assert cache.restore(entry, out) is None
    assert [p.name for p in out.iterdir()] == ["previous"]  # nothing published
    assert any("edge.raw does not match its stored digest since it was checked" in w
               for w in warnings(caplog))
    assert not stored.path.exists()


def test_prune_removes_forged_image_entries(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache")
    entry = cache.store(KEY, image_outputs(tmp_path, "built"))
    assert entry is not None
    forge_image(entry.path, "SHA256SUMS", 0, b"y")
    assert cache.prune() == [entry.path] and not entry.path.exists()


# --- initramfs -----------------------------------------------------------------------------------


class Builder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, tree: Path, *, root_fstype: str | None, **_: Any
                 ) -> list[initramfs.Kernel]:
        self.calls += 1
        kernels = initramfs.kernels(tree)
        for kernel in kernels:
            kernel.initrd.write_bytes(f"good initrd ({root_fstype})".encode())
        return kernels


def kernel_tree(root: Path) -> Path:
    for path, text in {"var/lib/dpkg/status": "Package: linux-image\n",
                       "boot/vmlinuz-6.1.0-1-amd64": "kernel",
                       "usr/lib/modules/6.1.0-1-amd64/kernel/ext4.ko": "module",
                       "usr/sbin/update-initramfs": "#!/bin/sh\n",
                       "etc/fstab": "UUID=x / ext4 defaults 0 1\n"}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


INITRD = "boot/initrd.img-6.1.0-1-amd64"


@pytest.mark.parametrize("attack", ["replaced", "replaced-and-resealed-digest", "copied"])
def test_a_replaced_initramfs_is_refused_and_built_again(
        tmp_path: Path, attack: str, caplog: pytest.LogCaptureFixture) -> None:
    tree = kernel_tree(tmp_path / "root")
    builder, cache = Builder(), InitramfsCache(tmp_path / "cache")
    initramfs_cache.build(tree, cache, root_fstype="ext4", builder=builder)
    (entry,) = [e.path for e in cache.storage.entries()]
    if attack == "copied":  # the entry for xfs is made of the one for ext4
        initramfs_cache.build(tree, cache, root_fstype="xfs", builder=builder)
        xfs = next(e.path for e in cache.storage.entries() if e.path != entry)
        shutil.rmtree(xfs)
        shutil.copytree(entry, xfs)
        fstype = "xfs"
    else:
        image = entry / Path(INITRD).name
        keep_times(image, lambda p: p.write_bytes(b"EVIL initrd (ext4)"))
        if attack == "replaced-and-resealed-digest" and (entry / "seal.json").exists():
            seal = json.loads((entry / "seal.json").read_text())
            seal["files"][image.name] = hashlib.sha256(image.read_bytes()).hexdigest()
            (entry / "seal.json").write_text(json.dumps(seal))
        fstype = "ext4"
    calls = builder.calls
    (tree / INITRD).unlink()
    with caplog.at_level(logging.WARNING):
        initramfs_cache.build(tree, cache, root_fstype=fstype, builder=builder)
    assert builder.calls == calls + 1  # before: restored from the cache, not built
    good = f"good initrd ({fstype})".encode()
    assert (tree / INITRD).read_bytes() == good
    assert any("initramfs cache entry" in w and "discarding it" in w
               for w in warnings(caplog))
    (tree / INITRD).unlink()
    initramfs_cache.build(tree, cache, root_fstype=fstype, builder=builder)  # stored again
    assert builder.calls == calls + 1 and (tree / INITRD).read_bytes() == good

"""The content-keyed initramfs cache: a configuration change that cannot affect the
initramfs reuses it; a change to what initramfs-tools reads builds it again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagecomposer.cache.initramfs import InitramfsCache
from imagecomposer.compose import initramfs, initramfs_cache


class Builder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, tree: Path, **_: Any) -> list[initramfs.Kernel]:
        self.calls += 1
        kernels = initramfs.kernels(tree)
        for kernel in kernels:
            kernel.initrd.write_bytes(f"initrd {self.calls}".encode())
        return kernels


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for path, text in {"var/lib/dpkg/status": "Package: linux-image\n",
                       "boot/vmlinuz-6.1.0-1-amd64": "kernel",
                       "usr/lib/modules/6.1.0-1-amd64/kernel/ext4.ko": "module",
                       "usr/sbin/update-initramfs": "#!/bin/sh\n",
                       "etc/fstab": "UUID=x / ext4 defaults 0 1\n",
                       "etc/motd": "hello\n"}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def test_hit_restores_without_building(tree: Path, tmp_path: Path) -> None:
    builder, cache = Builder(), InitramfsCache(tmp_path / "cache")
    initramfs_cache.build(tree, cache, root_fstype="ext4", builder=builder)
    (tree / "boot/initrd.img-6.1.0-1-amd64").unlink()
    (tree / "etc/motd").write_text("changed\n")  # not something the initramfs reads
    kernels = initramfs_cache.build(tree, cache, root_fstype="ext4", builder=builder)
    assert builder.calls == 1
    assert kernels[0].initrd.read_bytes() == b"initrd 1"
    conf = tree / "etc/initramfs-tools/conf.d/90-imagecomposer.conf"
    assert "FSTYPE=ext4" in conf.read_text()


@pytest.mark.parametrize("change", ["etc/initramfs-tools/modules", "var/lib/dpkg/status",
                                    "etc/fstab", "usr/lib/modules/6.1.0-1-amd64/extra.ko"])
def test_inputs_of_the_initramfs_are_in_the_key(tree: Path, tmp_path: Path,
                                                change: str) -> None:
    builder, cache = Builder(), InitramfsCache(tmp_path / "cache")
    initramfs_cache.build(tree, cache, root_fstype="ext4", builder=builder)
    (tree / change).parent.mkdir(parents=True, exist_ok=True)
    (tree / change).write_text("new\n")
    initramfs_cache.build(tree, cache, root_fstype="ext4", builder=builder)
    assert builder.calls == 2


def test_root_fstype_and_scripts_are_in_the_key(tree: Path, tmp_path: Path) -> None:
    builder, cache = Builder(), InitramfsCache(tmp_path / "cache")
    script = tmp_path / "post.sh"
    script.write_text("echo one\n")
    initramfs_cache.build(tree, cache, root_fstype="ext4", scripts=[script], builder=builder)
    initramfs_cache.build(tree, cache, root_fstype="xfs", scripts=[script], builder=builder)
    script.write_text("echo two\n")
    initramfs_cache.build(tree, cache, root_fstype="xfs", scripts=[script], builder=builder)
    assert builder.calls == 3


def test_a_failed_build_leaves_no_entry(tree: Path, tmp_path: Path) -> None:
    cache = InitramfsCache(tmp_path / "cache")

    def broken(tree: Path, **_: Any) -> list[initramfs.Kernel]:
        raise RuntimeError("mkinitramfs failed")

    with pytest.raises(RuntimeError):
        initramfs_cache.build(tree, cache, root_fstype="ext4", builder=broken)
    assert cache.storage.entries() == []
    assert not (tmp_path / "cache/.tmp").exists() or list((tmp_path / "cache/.tmp").iterdir()) == []


def test_no_cache_dir_always_builds(tree: Path) -> None:
    builder = Builder()
    initramfs_cache.build(tree, None, root_fstype="ext4", builder=builder)
    initramfs_cache.build(tree, None, root_fstype="ext4", builder=builder)
    assert builder.calls == 2

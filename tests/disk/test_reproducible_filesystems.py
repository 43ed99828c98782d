"""Same tree, identifiers and build epoch: the same filesystem bytes, whenever the tree was
written and in whatever order, with SOURCE_DATE_EPOCH unset (the default epoch) or set.

Each pair of trees below holds the same files created in opposite orders a second apart,
as two builds in different work directories would: every file time differs between them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import pytest

from imagecomposer.compose.disk import assemble, plan_layout
from imagecomposer.compose.disk.content import clamp_times
from imagecomposer.compose.disk.ext4_times import used_inodes
from imagecomposer.compose.disk.filesystems import fat_plan, make_filesystem
from imagecomposer.compose.layout import PlannedPartition
from imagecomposer.foundation.epoch import DEFAULT_EPOCH
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.spec.model import Disk, Partition

M = 1 << 20
PACKAGED = 1_600_000_000  # a file time older than any epoch used here: kept as it is
FILES = {
    "EFI/BOOT/BOOTX64.EFI": b"MZ" + bytes(5000),
    "EFI/systemd/systemd-bootx64.efi": b"MZ" + bytes(3000),
    "loader/loader.conf": b"timeout 0\n",
    "loader/entries/image-6.1.conf": b"title image\nlinux /image/6.1/linux\n",
    "image/6.1/linux": bytes(range(256)) * 64,
    "image/6.1/initrd": b"\x28\xb5\x2f\xfd" + bytes(9000),
    "etc/hostname": b"host\n",
}


def make_tree(path: Path, *, reverse: bool) -> Path:
    """FILES under ``path``, created in name order or its reverse, all at the wall-clock
    time but one, which keeps an old "packaged" time."""
    for name in sorted(FILES, reverse=reverse):
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(FILES[name])
    os.utime(path / "image/6.1/linux", (PACKAGED, PACKAGED))
    return path


@pytest.fixture
def two_trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = make_tree(tmp_path / "one", reverse=False)
    time.sleep(1.1)  # every time the second tree gets differs from the first's
    second = make_tree(tmp_path / "two", reverse=True)
    return first, second


def volume(fs: str, size: int = 40 * M, name: str = "esp") -> PlannedPartition:
    layout = plan_layout(Disk(size=None, partitions=(Partition(name, "generic", size,
                                                               filesystem=fs),)),
                         seed="repro", content_sizes={name: M})
    return layout.partitions[0]


def image(tmp_path: Path, fs: str, tree: Path, name: str, **kw: int) -> bytes:
    part = volume(fs)
    target = tmp_path / f"{name}.img"
    with target.open("wb") as handle:
        handle.truncate(part.size)
    make_filesystem(part, tree, target, **kw)
    return target.read_bytes()


def mtimes(tree: Path) -> dict[str, int]:
    return {str(p.relative_to(tree)): p.lstat().st_mtime_ns for p in tree.rglob("*")}


@pytest.mark.parametrize("fs", ["vfat", "ext4", "squashfs", "erofs"])
def test_same_tree_same_bytes_without_source_date_epoch(tmp_path: Path, fs: str,
                                                        two_trees: tuple[Path, Path]) -> None:
    first, second = two_trees
    before = mtimes(first)
    one = image(tmp_path, fs, first, "one")
    two = image(tmp_path, fs, second, "two")
    assert one == two
    assert mtimes(first) == before  # the tree is only read
    other = image(tmp_path, fs, first, "other", epoch=DEFAULT_EPOCH + 86400)
    assert other != one  # the epoch is what the times come from


def mtools(*argv: str) -> str:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    return subprocess.run(list(argv), check=True, capture_output=True, text=True,
                          env=env).stdout


def test_fat_times_are_the_epoch_and_entries_sorted(tmp_path: Path,
                                                    two_trees: tuple[Path, Path]) -> None:
    tree, _ = two_trees
    image(tmp_path, "vfat", tree, "fat")
    listing = mtools("mdir", "-/", "-a", "-i", str(tmp_path / "fat.img"), "::/")
    # every entry has the clock of mmd and mcopy: the default epoch
    assert "EFI          <DIR>     2023-06-10   0:00" in listing
    assert "CON        10 2023-06-10   0:00  loader.conf" in listing
    assert "linux            16384 2023-06-10   0:00" in listing
    efi = listing.split("Directory for ::/EFI\n", 1)[1]
    assert efi.index("BOOT") < efi.index("systemd")  # name order, not readdir order


def test_fat_refuses_symlinks_instead_of_copying_their_target(tmp_path: Path) -> None:
    """mcopy follows links: an absolute one would copy a host file into the image."""
    host = tmp_path / "host-secret"
    host.write_text("host only\n")
    tree = make_tree(tmp_path / "esp", reverse=False)
    (tree / "loader" / "stolen").symlink_to(host)
    with pytest.raises(ComposeError, match="cannot hold the symbolic link /loader/stolen"):
        image(tmp_path, "vfat", tree, "fat")
    assert not (tmp_path / "fat.img").read_bytes().count(b"host only")
    assert host.read_text() == "host only\n"


def test_fat_plan_lists_parents_first_in_name_order(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", reverse=True)
    directories, files = fat_plan(tree, "esp")
    assert directories == ["EFI", "etc", "image", "loader", "EFI/BOOT", "EFI/systemd",
                           "image/6.1", "loader/entries"]
    assert files["loader"] == ["loader.conf"] and files["image/6.1"] == ["initrd", "linux"]


def debugfs_stat(image_file: Path, path: str) -> str:
    return subprocess.run(["debugfs", "-R", f"stat {path}", str(image_file)], check=True,
                          capture_output=True, text=True).stdout


def test_ext4_inode_times_are_clamped_without_source_date_epoch(tmp_path: Path,
                                                               two_trees: tuple[Path, Path]
                                                               ) -> None:
    tree, _ = two_trees
    image(tmp_path, "ext4", tree, "root")
    new = debugfs_stat(tmp_path / "root.img", "/loader/loader.conf")
    old = debugfs_stat(tmp_path / "root.img", "/image/6.1/linux")
    epoch, packaged = f"{DEFAULT_EPOCH:#x}:00000000", f"{PACKAGED:#x}:00000000"
    for field in ("atime", "ctime", "mtime"):
        assert f" {field}: {epoch}" in new
        assert f" {field}: {packaged}" in old
    assert f"crtime: {epoch}" in new  # mke2fs's clock is the epoch too


def test_clamp_times_bounds_times_and_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("host file\n")
    os.utime(outside, ns=(2_000_000_000_123_456_789, 2_000_000_000_123_456_789))
    tree = make_tree(tmp_path / "t", reverse=False)
    (tree / "etc" / "link").symlink_to(outside)
    (tree / "etc" / "dirlink").symlink_to(tmp_path)
    os.utime(tree / "etc" / "hostname", ns=(PACKAGED * 10**9 + 5, PACKAGED * 10**9 + 5))
    assert clamp_times(tree, DEFAULT_EPOCH) > 0
    for path in (tree, tree / "loader"):
        assert path.lstat().st_mtime_ns == DEFAULT_EPOCH * 10**9
    for path in (tree / "loader" / "loader.conf", tree / "etc" / "link"):
        st = path.lstat()
        assert (st.st_mtime_ns, st.st_atime_ns) == (DEFAULT_EPOCH * 10**9,) * 2
    assert (tree / "etc" / "hostname").lstat().st_mtime_ns == PACKAGED * 10**9  # whole s
    assert outside.stat().st_mtime_ns == 2_000_000_000_123_456_789  # the target untouched
    assert clamp_times(tree, DEFAULT_EPOCH) == 0  # nothing left to do


def test_whole_disk_with_nested_esp_is_identical_without_source_date_epoch(
        tmp_path: Path, two_trees: tuple[Path, Path]) -> None:
    first, second = two_trees
    disk = Disk(size=None, partitions=(Partition("esp", "esp", 40 * M),
                                       Partition("root", "root", 24 * M)))

    def build(trees: dict[str, Path], name: str) -> bytes:
        layout = plan_layout(disk, seed="repro", content_sizes={n: M for n in trees})
        out = assemble(layout, trees, tmp_path / name / "disk.raw", workdir=tmp_path / "w")
        return out.output.read_bytes()

    assert build({"esp": first, "root": first}, "a") == \
        build({"esp": second, "root": second}, "b")


def test_ext4_names_a_debugfs_command_cannot_quote_are_clamped_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The clamp addressed inodes by path and skipped names with a quote or a newline: they
    kept the tree's ctime and atime. It addresses inodes by number now."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    trees = []
    for name in ("one", "two"):
        tree = tmp_path / name
        (tree / 'say "hi"').mkdir(parents=True)
        (tree / 'say "hi"' / "line\nbreak").write_text("x\n")
        trees.append(tree)
        time.sleep(1.1)
    assert image(tmp_path, "ext4", trees[0], "a") == image(tmp_path, "ext4", trees[1], "b")


def test_used_inodes_reads_every_inode_in_use(tmp_path: Path,
                                              two_trees: tuple[Path, Path]) -> None:
    tree, _ = two_trees
    image(tmp_path, "ext4", tree, "root")
    found = dict(used_inodes(tmp_path / "root.img"))
    entries = 1 + sum(1 for _ in tree.rglob("*"))  # the root directory and every entry
    assert len(found) == entries + 1  # and lost+found; no reserved inode (journal, ...)
    assert found[2] == DEFAULT_EPOCH and set(found.values()) == {DEFAULT_EPOCH, PACKAGED}


def test_ext4_clamp_does_not_log_debugfs_echo_line_by_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """debugfs echoes its six commands per inode: logging that echo cost 19 s of a 1 s
    run for a Debian root (100,000 lines); the log gets one line for the whole clamp."""
    tree = tmp_path / "tree"
    for index in range(300):
        (tree / f"d{index % 10}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{index % 10}" / f"f{index}").write_text(str(index))
    caplog.set_level(logging.DEBUG, logger="imagecomposer")
    image(tmp_path, "ext4", tree, "root")
    echoed = [r for r in caplog.records if "sif <" in r.getMessage()]
    assert echoed == []
    assert [r for r in caplog.records if "inodes clamped" in r.getMessage()]

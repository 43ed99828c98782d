"""Assemble real disks from small trees with the real tools, then check them with the
tools the field uses: sfdisk, e2fsck/debugfs at an offset, mtools, fsck.vfat, xfs_repair,
veritysetup verify. No loop device and no mount is involved anywhere."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.compose.disk import assemble, plan_layout, stack, tree_size
from imagecomposer.compose.disk.assembly import AssemblyResult, space_needed
from imagecomposer.compose.disk.inspect import (
    NotInImage,
    extract_partition,
    file_info,
    list_dir,
    read_file,
)
from imagecomposer.compose.layout import Layout
from imagecomposer.foundation.errors import ComposeError, DiskToolError, InsufficientDiskSpace
from imagecomposer.spec.model import Disk, Partition

M = 1 << 20


def sh(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True,
                          text=True).stdout


def blkid(image: Path, offset: int) -> dict[str, str]:
    out = sh("blkid", "-p", "-o", "export", "-O", str(offset), image)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def build(tmp_path: Path, disk: Disk, trees: dict[str, Path], seed: str = "seed",
          **kw: object) -> AssemblyResult:
    layout = plan_layout(disk, seed=seed, content_sizes={n: 8 * M for n in trees})
    return assemble(layout, trees, tmp_path / "out" / "disk.raw", workdir=tmp_path / "work",
                    **kw)  # type: ignore[arg-type]


GPT = Disk(size=None, partition_table="gpt", partitions=(
    Partition("esp", "esp", 64 * M, label="ESP"),
    Partition("swap", "swap", 8 * M, label="swap"),
    Partition("usr-ro", "generic", 8 * M, filesystem="squashfs"),
    Partition("opt-ro", "generic", 8 * M, filesystem="erofs"),
    Partition("root", "root", None, label="root", mount_options="noatime"),
))


def test_gpt_disk_from_trees(tmp_path: Path, root_tree: Path, esp_tree: Path) -> None:
    trees = {"esp": esp_tree, "root": root_tree, "usr-ro": root_tree, "opt-ro": root_tree}
    result = build(tmp_path, GPT, trees)
    image = result.output
    layout = result.layout
    assert image.is_file() and image.stat().st_size == layout.size
    assert [p.name for p in image.parent.iterdir()] == ["disk.raw"]
    assert not list((tmp_path / "work").iterdir())  # staged images are gone

    table = json.loads(sh("sfdisk", "--json", image))["partitiontable"]
    assert table["label"] == "gpt" and table["id"].lower() == layout.disk_id
    for entry, part in zip(table["partitions"], layout.partitions, strict=True):
        assert entry["start"] * 512 == part.start and entry["size"] * 512 == part.size
        assert entry["type"] == part.type_guid
        assert entry["uuid"].lower() == part.partuuid
        assert entry["name"] == (part.label or part.name)

    esp, swap, squash, erofs, root = layout.partitions
    assert blkid(image, esp.start)["UUID"] == esp.fsuuid
    assert blkid(image, esp.start)["VERSION"] == "FAT32"
    assert blkid(image, swap.start)["UUID"] == swap.fsuuid
    assert blkid(image, squash.start)["TYPE"] == "squashfs"
    assert blkid(image, erofs.start)["UUID"] == erofs.fsuuid
    assert blkid(image, root.start)["UUID"] == root.fsuuid
    assert blkid(image, root.start)["LABEL"] == "root"

    fsck = subprocess.run(["e2fsck", "-fn", f"{image}?offset={root.start}"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert read_file(image, "root", "/etc/hostname") == b"testhost\n"
    assert read_file(image, "root", "/home/alice/notes") == bytes(range(256)) * 4096
    key = file_info(image, "root", "/etc/ssh/key")
    assert oct(key.mode) == oct(0o100600) and key.uid == 0
    if os.geteuid() == 0:
        assert file_info(image, "root", "/home/alice/notes").uid == 1000
    assert file_info(image, "root", "/etc/motd").mode & 0o170000 == 0o120000
    with pytest.raises(NotInImage):
        read_file(image, "root", "/etc/absent")

    assert read_file(image, "ESP", "/loader/loader.conf") == b"timeout 0\n"
    assert list_dir(image, 1, "/EFI/BOOT") == ["BOOTX64.EFI"]
    fat = extract_partition(image, "ESP", tmp_path / "esp.img")
    assert fat.filesystem == "vfat"
    check = subprocess.run(["fsck.vfat", "-n", tmp_path / "esp.img"], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout

    assert read_file(image, "usr-ro", "/etc/hostname") == b"testhost\n"
    extract_partition(image, "opt-ro", tmp_path / "erofs.img")
    sh("fsck.erofs", tmp_path / "erofs.img")
    assert result.image_sizes["usr-ro"] < squash.size


def test_mbr_disk(tmp_path: Path, root_tree: Path, esp_tree: Path) -> None:
    disk = Disk(size=200 * M, partition_table="mbr", partitions=(
        Partition("esp", "esp", 16 * M), Partition("root", "root", None)))
    result = build(tmp_path, disk, {"esp": esp_tree, "root": root_tree})
    image, layout = result.output, result.layout
    dump = sh("sfdisk", "--dump", image)
    assert "label: dos" in dump and f"label-id: {layout.disk_id}" in dump
    table = json.loads(sh("sfdisk", "--json", image))["partitiontable"]
    assert [p["type"] for p in table["partitions"]] == ["ef", "83"]
    assert table["partitions"][1].get("bootable") is True
    assert table["partitions"][-1]["start"] * 512 + table["partitions"][-1]["size"] * 512 \
        == 200 * M
    esp = layout.partitions[0]
    assert blkid(image, esp.start)["VERSION"] == "FAT16"  # 16 MiB is below FAT32's minimum
    root = layout.partitions[1]
    uuids = sh("blkid", "-p", "-o", "value", "-s", "PART_ENTRY_UUID", "-O", str(root.start),
               image)
    assert layout.disk_id[2:] in uuids or root.partuuid.startswith(layout.disk_id[2:])
    subprocess.run(["e2fsck", "-fn", f"{image}?offset={root.start}"], check=True,
                   capture_output=True)
    assert read_file(image, 2, "/etc/hostname") == b"testhost\n"
    assert read_file(image, 1, "/EFI/BOOT/BOOTX64.EFI").startswith(b"MZ")


def test_xfs_from_a_prototype_file(tmp_path: Path, root_tree: Path) -> None:
    disk = Disk(size=None, partitions=(
        Partition("data", "generic", 300 * M, filesystem="xfs", label="data"),))
    result = build(tmp_path, disk, {"data": root_tree})
    part = result.layout.partitions[0]
    assert blkid(result.output, part.start)["UUID"] == part.fsuuid
    piece = tmp_path / "xfs.img"
    extract_partition(result.output, "data", piece)
    sh("xfs_repair", "-n", piece)
    listing = sh("xfs_db", "-r", "-c", "ls /etc", piece)
    assert "hostname" in listing and "motd" in listing
    inode = sh("xfs_db", "-r", "-c", "path /home/alice/notes", "-c", "print core.uid core.mode",
               piece)
    if os.geteuid() == 0:
        assert "core.uid = 1000" in inode


def test_xfs_refuses_names_it_cannot_express(tmp_path: Path, root_tree: Path) -> None:
    (root_tree / "etc" / "a name").write_text("x")
    disk = Disk(size=None, partitions=(Partition("data", "generic", 300 * M, filesystem="xfs"),))
    with pytest.raises(ComposeError, match="cannot hold the name"):
        build(tmp_path, disk, {"data": root_tree})
    assert not (tmp_path / "out" / "disk.raw").exists()


VERITY = Disk(size=None, partitions=(
    Partition("esp", "esp", 16 * M),
    Partition("root", "root", 32 * M, filesystem="ext4"),
    Partition("root-verity", "verity", 1 * M),
))


@pytest.mark.parametrize("filesystem", ["ext4", "squashfs", "erofs"])
def test_verity_root(tmp_path: Path, root_tree: Path, esp_tree: Path, filesystem: str) -> None:
    parts = list(VERITY.partitions)
    parts[1] = Partition("root", "root", 32 * M, filesystem=filesystem)  # type: ignore[arg-type]
    disk = Disk(size=None, partitions=tuple(parts))
    seen: list[str] = []

    def on_verity(info: object) -> None:
        seen.append("verity")
        (esp_tree / "cmdline.txt").write_text(info.cmdline())  # type: ignore[attr-defined]

    result = build(tmp_path, disk, {"esp": esp_tree, "root": root_tree},
                   events=seen.append, on_verity=on_verity)
    info = result.verity
    assert info is not None and result.roothash == info.roothash and len(info.roothash) == 64
    # the root hash reached the ESP: the callback ran before the ESP was built
    assert seen.index("verity") < next(i for i, s in enumerate(seen) if "'esp'" in s)
    cmdline = read_file(result.output, "esp", "/cmdline.txt").decode()
    root, hashpart = result.layout.partitions[1:]
    assert f"roothash={info.roothash}" in cmdline
    assert f"systemd.verity_root_data=/dev/disk/by-partuuid/{root.partuuid}" in cmdline
    assert f"systemd.verity_root_hash=/dev/disk/by-partuuid/{hashpart.partuuid}" in cmdline
    assert blkid(result.output, hashpart.start)["UUID"] == hashpart.fsuuid

    data, tree = tmp_path / "data.img", tmp_path / "hash.img"
    extract_partition(result.output, "root", data)
    extract_partition(result.output, "root-verity", tree)
    sh("veritysetup", "verify", data, tree, info.roothash)
    # a flipped bit in the data is caught
    with data.open("r+b") as handle:
        handle.seek(1100)
        byte = handle.read(1)
        handle.seek(1100)
        handle.write(bytes([byte[0] ^ 1]))
    assert subprocess.run(["veritysetup", "verify", data, tree, info.roothash],
                          capture_output=True).returncode != 0


def test_same_seed_gives_a_byte_identical_disk(tmp_path: Path, root_tree: Path,
                                               flat_esp_tree: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    disk = Disk(size=None, partitions=(
        Partition("esp", "esp", 40 * M), Partition("usr", "generic", 8 * M,
                                                   filesystem="squashfs"),
        Partition("root", "root", 32 * M), Partition("root-verity", "verity", 1 * M)))
    (root_tree / ".hidden").write_text("dot file\n")
    trees = {"esp": flat_esp_tree, "usr": root_tree, "root": root_tree}
    # The first build reads the fresh tree and so moves its atimes (relatime); ext4
    # timestamps are clamped to SOURCE_DATE_EPOCH, so the second build still matches.
    first = build(tmp_path / "a", disk, trees)
    (root_tree / "etc" / "hostname").chmod(0o644)  # a new ctime, same content and mode
    second = build(tmp_path / "b", disk, trees)
    assert first.layout == second.layout and first.roothash == second.roothash
    assert first.output.read_bytes() == second.output.read_bytes()
    stamp = subprocess.run(["debugfs", "-R", "stat /.hidden",
                            f"{first.output}?offset={first.layout.root.start}"],
                           capture_output=True, text=True).stdout
    for field in ("atime", "ctime", "mtime", "crtime"):  # all clamped to the epoch
        assert f"{field}: 0x6553f100:00000000" in stamp
    other = build(tmp_path / "c", disk, trees, seed="another")
    assert other.layout.disk_id != first.layout.disk_id


def _no_leftovers(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert not out.exists() or not list(out.iterdir())
    work = tmp_path / "work"
    assert not work.exists() or not list(work.iterdir())


def test_failing_mkfs_leaves_nothing(tmp_path: Path, root_tree: Path, esp_tree: Path,
                                     fake_tool: Callable[[str, str], Path]) -> None:
    fake_tool("mkfs.ext4", "echo 'mkfs.ext4: Could not allocate block' >&2; exit 1")
    failed = r"Command failed with exit code 1: mkfs\.ext4 "
    with pytest.raises(DiskToolError, match=failed) as info:
        build(tmp_path, GPT, {"esp": esp_tree, "root": root_tree, "usr-ro": root_tree,
                              "opt-ro": root_tree})
    assert "Could not allocate block" in str(info.value)
    _no_leftovers(tmp_path)


def test_interrupt_leaves_nothing(tmp_path: Path, root_tree: Path, esp_tree: Path) -> None:
    def interrupt(line: str) -> None:
        if "'root'" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, GPT, {"esp": esp_tree, "root": root_tree, "usr-ro": root_tree,
                              "opt-ro": root_tree}, events=interrupt)
    _no_leftovers(tmp_path)


def test_an_existing_output_survives_a_failed_build(tmp_path: Path, root_tree: Path,
                                                    fake_tool: Callable[[str, str], Path]
                                                    ) -> None:
    out = tmp_path / "out" / "disk.raw"
    out.parent.mkdir()
    out.write_bytes(b"previous image")
    fake_tool("mksquashfs", "exit 3")
    with pytest.raises(DiskToolError):
        build(tmp_path, Disk(size=None, partitions=(
            Partition("usr", "generic", 8 * M, filesystem="squashfs"),)), {"usr": root_tree})
    assert out.read_bytes() == b"previous image"
    assert [p.name for p in out.parent.iterdir()] == ["disk.raw"]


def test_insufficient_disk_space(tmp_path: Path, root_tree: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil as real_shutil

    usage = real_shutil.disk_usage(tmp_path)
    monkeypatch.setattr("imagecomposer.compose.disk.assembly.shutil.disk_usage",
                        lambda _p: usage._replace(free=512 * 1024))
    with pytest.raises(InsufficientDiskSpace,
                       match=r"^Insufficient disk space: need [\d.]+ MiB, have 0.5 MiB"):
        build(tmp_path, Disk(size=None, partitions=(Partition("root", "root", None),)),
              {"root": root_tree})
    _no_leftovers(tmp_path)


def test_image_larger_than_its_partition(tmp_path: Path) -> None:
    tree = tmp_path / "big"
    tree.mkdir()
    (tree / "random").write_bytes(os.urandom(3 * M))
    disk = Disk(size=None, partitions=(Partition("usr", "generic", 1 * M,
                                                 filesystem="squashfs"),))
    with pytest.raises(ComposeError, match=r"image of partition 'usr' is .* give it a larger"):
        build(tmp_path, disk, {"usr": tree})
    _no_leftovers(tmp_path)


def test_unknown_tree_name_is_refused(tmp_path: Path, root_tree: Path) -> None:
    layout: Layout = plan_layout(Disk(size=64 * M, partitions=(
        Partition("root", "root", None),)), seed="x")
    with pytest.raises(ComposeError, match="not in the layout"):
        assemble(layout, {"rooot": root_tree}, tmp_path / "d.raw", workdir=tmp_path / "w")


def test_boot_code_keeps_the_partition_table(tmp_path: Path, root_tree: Path) -> None:
    from imagecomposer.compose.disk.table import write_boot_code

    disk = Disk(size=64 * M, partition_table="mbr", partitions=(Partition("root", "root", None),))
    result = build(tmp_path, disk, {"root": root_tree})
    before = sh("sfdisk", "--dump", result.output)
    write_boot_code(result.output, b"\xeb\x63" + bytes(510))  # a 512-byte boot.img
    data = result.output.read_bytes()[:512]
    assert data[:2] == b"\xeb\x63" and data[510:] == b"\x55\xaa"
    assert sh("sfdisk", "--dump", result.output) == before


@pytest.mark.parametrize(("size", "version"), [(4, "FAT12"), (16, "FAT16"), (40, "FAT32")])
def test_fat_variant_follows_the_size(tmp_path: Path, esp_tree: Path, size: int,
                                      version: str) -> None:
    disk = Disk(size=None, partitions=(Partition("esp", "esp", size * M),))
    result = build(tmp_path, disk, {"esp": esp_tree})
    assert blkid(result.output, M)["VERSION"] == version
    extract_partition(result.output, "esp", tmp_path / "fat.img")
    sh("fsck.vfat", "-n", tmp_path / "fat.img")
    assert read_file(result.output, "esp", "/loader/loader.conf") == b"timeout 0\n"


def test_space_check_takes_the_sizes_the_layout_was_planned_from(
        tmp_path: Path, root_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the trees' sizes (the composer has them from planning the layout), the space
    check does not walk the trees again, and judges by exactly those sizes."""
    disk = Disk(size=None, partitions=(Partition("root", "root", None),))
    layout = plan_layout(disk, seed="seed", content_sizes={"root": tree_size(root_tree)})
    trees = {"root": root_tree}
    walked = space_needed(layout, trees)
    walks: list[Path] = []
    monkeypatch.setattr(stack, "tree_size", lambda tree: walks.append(tree) or 0)
    assert space_needed(layout, trees, {"root": tree_size(root_tree)}) == walked
    assert not walks
    assert space_needed(layout, trees, {"root": 500 * M}) > walked
    assert space_needed(layout, trees) != walked and walks == [root_tree]  # not given: walked

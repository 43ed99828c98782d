"""The LVM2 physical volumes imagecomposer writes itself, checked by lvm2's own tools:
``pvck --dump`` on plain files (CRCs of the label, the metadata area header and the text),
``lvs``/``pvs``/``vgck`` on a loop device of the partition (tests only), and the
filesystems at each logical volume's offset with e2fsck/debugfs/blkid. The disk itself is
written without a loop device, a mapping or a mount."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from imagecomposer.compose.disk import assemble, lvm, plan_layout
from imagecomposer.compose.disk.assembly import AssemblyResult
from imagecomposer.compose.disk.types import LVM
from imagecomposer.compose.layout import (
    Layout,
    PlannedLogicalVolume,
    PlannedPartition,
    PlannedVolumeGroup,
)
from imagecomposer.foundation.errors import DiskToolError
from imagecomposer.spec.model import Disk, LogicalVolume, Partition, VolumeGroup
from tests.disk.stacked import (
    debugfs_cat,
    e2fsck,
    loop_device,
    lvm_report,
    need,
    piece,
    pvck,
    run,
)

M = 1 << 20
pytestmark = pytest.mark.usefixtures("lvm_tools")


@pytest.fixture
def lvm_tools() -> None:
    need("pvck", "mkfs.ext4", "debugfs", "sfdisk")


def small_vg(*, pv_size: int = 64 * M) -> PlannedVolumeGroup:
    lvs = (PlannedLogicalVolume(name="root", vg="vg-t", lvid=lvm.derive_id("s", "lv", "root"),
                                filesystem="ext4", offset=M, size=16 * M, start_extent=0,
                                extent_count=4, fsuuid="x"),
           PlannedLogicalVolume(name="var", vg="vg-t", lvid=lvm.derive_id("s", "lv", "var"),
                                filesystem="ext4", offset=17 * M, size=8 * M, start_extent=4,
                                extent_count=2, fsuuid="y"))
    return PlannedVolumeGroup(name="vg-t", vgid=lvm.derive_id("s", "vg", "vg-t"),
                              pvid=lvm.derive_id("s", "pv", "p"), extent_size=4 * M,
                              pe_start=M, pv_size=pv_size, pe_count=(pv_size - M) // (4 * M),
                              logical_volumes=lvs)


def bitwise_crc(data: bytes) -> int:
    """lvm2's CRC written out bit by bit (reflected 0xEDB88320, initial 0xF597A6CF, no
    final inversion): an implementation independent of the zlib one under test."""
    crc = 0xF597A6CF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc


@pytest.mark.parametrize("data", [b"", b"LVM2 001", bytes(range(256)) * 3])
def test_crc_is_lvm2s(data: bytes) -> None:
    assert lvm.crc(data) == bitwise_crc(data)


def test_ids_are_lvm_ids_derived_from_the_seed() -> None:
    one = lvm.derive_id("seed", "vg", "vg0")
    assert one == lvm.derive_id("seed", "vg", "vg0")
    assert one != lvm.derive_id("seed", "vg", "vg1") != lvm.derive_id("other", "vg", "vg0")
    assert [len(g) for g in one.split("-")] == [6, 4, 4, 4, 4, 4, 6]
    assert all(c.isascii() and c.isalnum() for c in one.replace("-", ""))


def test_label_and_metadata_area_layout() -> None:
    vg = small_vg()
    head = lvm.physical_volume(vg, when=None)
    assert head[:512] == bytes(512)  # sector 0 untouched
    label = head[512:1024]
    assert label[:8] == b"LABELONE" and label[24:32] == b"LVM2 001"
    sector, crc, offset = struct.unpack_from("<QII", label, 8)
    assert (sector, offset) == (1, 32) and crc == bitwise_crc(label[20:])
    assert label[32:64] == vg.pvid.replace("-", "").encode()
    mda = head[4096:4608]
    assert mda[4:20] == b" LVM2 x[5A%r0N*>"
    assert struct.unpack_from("<I", mda)[0] == bitwise_crc(mda[4:])
    text_offset, text_size, text_crc, _flags = struct.unpack_from("<QQII", mda, 40)
    text = head[4096 + text_offset:4096 + text_offset + text_size]
    assert text_offset == 512 and text.endswith(b"\0") and text_crc == bitwise_crc(text)
    assert text[:-1].decode() == lvm.metadata_text(vg)


def test_metadata_text() -> None:
    text = lvm.metadata_text(small_vg(), when=1_700_000_000)
    assert text.startswith(f'vg-t {{\nid = "{lvm.derive_id("s", "vg", "vg-t")}"\nseqno = 1\n')
    assert "extent_size = 8192\n" in text  # sectors
    assert "dev_size = 131072\npe_start = 2048\npe_count = 15\n" in text
    assert 'segment1 {\nstart_extent = 0\nextent_count = 2\n\ntype = "striped"\n' \
           'stripe_count = 1\n\nstripes = [\n"pv0", 4\n]\n}' in text
    assert "creation_time = 1700000000\n" in text and 'contents = "Text Format Volume Group"' \
        in text
    assert "device =" not in text  # no device hint: it would name the build host's device
    assert "creation_time" not in lvm.metadata_text(small_vg(), when=None)


def test_pv_in_a_plain_file_passes_pvck(tmp_path: Path) -> None:
    pv = tmp_path / "pv.img"
    with pv.open("wb") as handle:
        handle.truncate(64 * M)
    lvm.write_physical_volume(pv, 0, small_vg(), when=1_700_000_000)
    headers = pvck(pv, "headers")
    assert "label_header.id LABELONE" in headers
    assert "pv_header.device_size 67108864" in headers
    assert "pv_header_extension.version 2" in headers and "pv_header_extension.flags 1" in headers
    assert "mda_header_1.size 1044480" in headers
    metadata = pvck(pv, "metadata")
    assert "vgname vg-t seqno 1" in metadata
    assert lvm.metadata_text(small_vg(), when=1_700_000_000).strip() in metadata
    assert pv.stat().st_blocks * 512 <= 64 * 1024  # only the written sectors are allocated


def test_a_flipped_byte_is_caught_by_pvck(tmp_path: Path) -> None:
    """The oracle is real: pvck reports a CRC mismatch in what we wrote."""
    pv = tmp_path / "pv.img"
    with pv.open("wb") as handle:
        handle.truncate(64 * M)
    lvm.write_physical_volume(pv, 0, small_vg())
    with pv.open("r+b") as handle:
        handle.seek(4608 + 2)
        handle.write(b"X")
    done = run("pvck", "--dump", "metadata", pv, check=False)
    assert "crc does not match" in (done.stdout + done.stderr).decode()


LVM_DISK = Disk(size=None, partition_table="gpt", partitions=(
    Partition("boot", "xbootldr", 16 * M, filesystem="ext4", mountpoint="/boot"),
    Partition("system", "lvm", 96 * M, filesystem="none", volume_group=VolumeGroup("vg0", (
        LogicalVolume("root", 40 * M, mountpoint="/", label="root"),
        LogicalVolume("swap", 8 * M, filesystem="swap"),
        LogicalVolume("data", None, filesystem="vfat", mountpoint="/data"),
    ))),
))


def build(tmp_path: Path, disk: Disk, trees: dict[str, Path], name: str = "disk.raw",
          ) -> AssemblyResult:
    layout = plan_layout(disk, seed="seed", content_sizes={n: 8 * M for n in trees})
    return assemble(layout, trees, tmp_path / "out" / name, workdir=tmp_path / "work")


def lv(layout: Layout, name: str) -> tuple[PlannedPartition, PlannedLogicalVolume]:
    volume = layout.volume(name)
    assert isinstance(volume, PlannedLogicalVolume)
    return layout.holder(volume), volume


def test_lvm_disk_from_trees(tmp_path: Path, root_tree: Path) -> None:
    result = build(tmp_path, LVM_DISK, {"root": root_tree})
    image, layout = result.output, result.layout
    system = layout.partitions[1]
    assert system.type_guid == LVM and system.volume_group is not None
    assert system.volume_group.pv_size == system.size == 96 * M
    table = run("sfdisk", "--json", image).stdout.decode()
    assert LVM in table
    pvck(piece(image, system.start, system.size, tmp_path / "pv.img"), "metadata")
    part, root = lv(layout, "root")
    assert (root.offset, root.size, root.start_extent, root.extent_count) == (M, 40 * M, 0, 10)
    e2fsck(image, part.start + root.offset)
    assert debugfs_cat(image, part.start + root.offset, "/etc/hostname") == b"testhost\n"
    assert debugfs_cat(image, part.start + root.offset, "/home/alice/notes") == \
        bytes(range(256)) * 4096
    for name, kind in (("root", "ext4"), ("swap", "swap"), ("data", "vfat")):
        part, volume = lv(layout, name)
        found = run("blkid", "-p", "-o", "export", "-O", str(part.start + volume.offset),
                    image).stdout.decode()
        assert f"TYPE={kind}" in found and f"UUID={volume.fsuuid}" in found, found
    _, data = lv(layout, "data")
    assert (data.start_extent, data.extent_count) == (12, 11)  # the rest: (96-1)//4 - 12
    assert image.stat().st_blocks * 512 < 40 * M  # sparse: only content is allocated


def test_lvm_tools_read_the_volume_group(tmp_path: Path, root_tree: Path) -> None:
    """lvs/pvs/vgck on a loop device of the LVM partition (no device-mapper needed)."""
    result = build(tmp_path, LVM_DISK, {"root": root_tree})
    system = result.layout.partitions[1]
    with loop_device(result.output, system.start, system.size) as device:
        check = run("vgck", "--devices", device, "vg0", check=False)
        assert check.returncode == 0, check.stderr.decode()
        pv = lvm_report("pvs", [device], "vg_name", "dev_size", "pe_start", "pv_pe_count",
                        "pv_uuid")
        assert pv == [{"vg_name": "vg0", "dev_size": str(96 * M), "pe_start": str(M),
                       "pv_pe_count": "23",
                       "pv_uuid": system.volume_group.pvid}]  # type: ignore[union-attr]
        rows = lvm_report("lvs", [device], "lv_name", "lv_size", "seg_pe_ranges", "lv_uuid")
    by_name = {row["lv_name"]: row for row in rows}
    for volume in result.layout.logical_volumes():
        row = by_name[volume.name]
        assert row["lv_size"] == str(volume.size) and row["lv_uuid"] == volume.lvid
        last = volume.start_extent + volume.extent_count - 1
        assert row["seg_pe_ranges"] == f"{device}:{volume.start_extent}-{last}"


def test_lvm_disk_is_reproducible(tmp_path: Path, root_tree: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    disk = Disk(size=None, partition_table="gpt", partitions=(LVM_DISK.partitions[1],))
    trees = {"root": root_tree}
    one = build(tmp_path, disk, trees, "one.raw").output
    two = build(tmp_path, disk, trees, "two.raw").output

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest(one) == digest(two)
    text = pvck(piece(one, M, 96 * M, tmp_path / "pv.img"), "metadata")
    assert "creation_time = 1700000000" in text and 'creation_host = "imagecomposer"' in text


def test_failing_mkfs_in_a_logical_volume_leaves_nothing(tmp_path: Path, root_tree: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mkswap").write_text("#!/bin/sh\necho 'mkswap: boom' >&2\nexit 3\n")
    (fake / "mkswap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin")
    with pytest.raises(DiskToolError) as caught:
        build(tmp_path, LVM_DISK, {"root": root_tree})
    assert "mkswap" in str(caught.value)
    assert not list((tmp_path / "out").iterdir())
    assert not list((tmp_path / "work").iterdir())

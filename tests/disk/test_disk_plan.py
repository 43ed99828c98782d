"""Layout planning: offsets, sizes, type GUIDs and deterministic identifiers (no tools)."""

from __future__ import annotations

import re

import pytest

from imagecomposer.compose.disk import plan_layout, verity_size
from imagecomposer.compose.disk import types as ptypes
from imagecomposer.compose.layout import Layout
from imagecomposer.foundation.errors import ValidationError
from imagecomposer.spec.model import Disk, Partition

M = 1 << 20
G = 1 << 30


def gpt_disk() -> Disk:
    parts = (Partition("esp", "esp", 512 * M), Partition("swap", "swap", 256 * M),
             Partition("root", "root", None))
    return Disk(size=2 * G, partition_table="gpt", partitions=parts)


def test_gpt_layout_is_aligned_typed_and_fills_the_disk() -> None:
    layout = plan_layout(gpt_disk(), seed="s1")
    esp, swap, root = layout.partitions
    assert layout.table == "gpt" and layout.size == 2 * G
    assert [p.start for p in layout.partitions] == [1 * M, 513 * M, 769 * M]
    assert all(p.start % M == 0 and p.size % M == 0 for p in layout.partitions)
    # the rest partition ends one MiB before the end: room for the backup GPT
    assert root.end == 2 * G - 1 * M
    assert esp.type_guid == ptypes.ESP and esp.filesystem == "vfat"
    assert swap.type_guid == ptypes.SWAP and swap.filesystem == "swap"
    assert root.type_guid == "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
    assert root.mountpoint == "/" and esp.mountpoint == "/boot/efi"
    assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}", esp.fsuuid)
    assert [p.number for p in layout.partitions] == [1, 2, 3]
    assert layout.root is root and layout.esp is esp


def test_identifiers_depend_only_on_the_seed() -> None:
    a = plan_layout(gpt_disk(), seed="lock-hash-1")
    b = plan_layout(gpt_disk(), seed="lock-hash-1")
    c = plan_layout(gpt_disk(), seed="lock-hash-2")
    assert a == b

    def ids(lay: Layout) -> list[str]:
        return [lay.disk_id, *(p.partuuid for p in lay.partitions),
                *(p.fsuuid for p in lay.partitions)]

    assert not set(ids(a)) & set(ids(c))
    assert len(set(ids(a))) == len(ids(a))


def test_spec_partition_uuid_and_explicit_guid_type_are_kept() -> None:
    guid = "3B8F8425-20E0-4F3B-907F-1A25A76F98E8"
    disk = Disk(size=1 * G, partitions=(
        Partition("srv", guid, 64 * M, uuid="01234567-89ab-cdef-0123-456789abcdef"),
        Partition("root", "root", None)))
    srv = plan_layout(disk, seed="x").partitions[0]
    assert srv.type_guid == guid and srv.partuuid == "01234567-89ab-cdef-0123-456789abcdef"


def test_aarch64_root_type() -> None:
    layout = plan_layout(gpt_disk(), seed="x", arch="aarch64")
    assert layout.root.type_guid == "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"


def test_mbr_codes_and_partuuids() -> None:
    disk = Disk(size=1 * G, partition_table="mbr", partitions=(
        Partition("esp", "esp", 64 * M), Partition("root", "root", None)))
    layout = plan_layout(disk, seed="x")
    assert re.fullmatch(r"0x[0-9a-f]{8}", layout.disk_id)
    esp, root = layout.partitions
    assert (esp.type_guid, root.type_guid) == ("ef", "83")
    disk_hex = layout.disk_id[2:]
    assert (esp.partuuid, root.partuuid) == (f"{disk_hex}-01", f"{disk_hex}-02")
    assert root.end == 1 * G  # no backup header on MBR


def test_mbr_refuses_guids_and_more_than_four_partitions() -> None:
    parts = tuple(Partition(f"p{i}", "generic", 8 * M) for i in range(5))
    with pytest.raises(ValidationError, match="at most 4 partitions"):
        plan_layout(Disk(size=1 * G, partition_table="mbr", partitions=parts), seed="x")
    with pytest.raises(ValidationError, match="needs a GPT partition table") as info:
        plan_layout(Disk(size=1 * G, partition_table="mbr", partitions=(
            Partition("a", "3B8F8425-20E0-4F3B-907F-1A25A76F98E8", None),)), seed="x")
    assert info.value.problems[0].path == "disk.partitions[0].type"


def test_auto_size_is_content_plus_margin() -> None:
    disk = Disk(size=None, partitions=(Partition("esp", "esp", 64 * M),
                                       Partition("root", "root", None)))
    layout = plan_layout(disk, seed="x", content_sizes={"root": 400 * M})
    root = layout.root
    assert 400 * M * 1.2 < root.size < 400 * M * 1.5
    assert layout.size == root.end + 1 * M


def test_auto_size_needs_content_and_swap_needs_size() -> None:
    disk = Disk(size=None, partitions=(Partition("swap", "swap", None),))
    with pytest.raises(ValidationError, match="swap partition needs an explicit size"):
        plan_layout(disk, seed="x")
    disk = Disk(size=None, partitions=(Partition("root", "root", None),))
    with pytest.raises(ValidationError, match="content size of partition 'root' is unknown"):
        plan_layout(disk, seed="x")


@pytest.mark.parametrize(("parts", "message"), [
    ((Partition("a", "root", None), Partition("b", "var", 8 * M)),
     "only the last partition may have size 'rest'"),
    ((Partition("a", "root", 8 * M), Partition("a", "var", 8 * M)), "used twice"),
    ((Partition("e", "esp", 8 * M, filesystem="xfs"),), "an ESP must be vfat"),
    ((Partition("r", "root", 8 * M, filesystem="swap"),), "swap partitions take"),
    ((Partition("r", "bogus", 8 * M),), "unknown partition type 'bogus'"),
    ((Partition("r", "root", 8 * M, filesystem="xfs"),), "xfs filesystem needs at least 300"),
    ((Partition("r", "root", 8 * M, label="a-label-that-is-too-long"),), "longer than ext4"),
    ((), "no partitions"),
])
def test_bad_disks_are_refused_with_a_path(parts: tuple[Partition, ...], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        plan_layout(Disk(size=1 * G, partitions=parts), seed="x")
    assert all(p.path.startswith("disk.") for p in info.value.problems)


def test_partitions_larger_than_the_disk() -> None:
    disk = Disk(size=100 * M, partitions=(Partition("root", "root", 200 * M),))
    with pytest.raises(ValidationError, match=r"need .* but disk\.size is"):
        plan_layout(disk, seed="x")


def test_verity_partition_is_sized_from_the_root() -> None:
    disk = Disk(size=1 * G, partitions=(Partition("root", "root", 512 * M),
                                        Partition("root-verity", "verity", 0)))
    with pytest.raises(ValidationError):  # a zero-size verity partition is too small
        plan_layout(disk, seed="x")
    disk = Disk(size=None, partitions=(Partition("root", "root", 512 * M),
                                       Partition("root-verity", "verity", 64 * M)))
    layout = plan_layout(disk, seed="x")
    verity = layout.by_type("verity")
    assert verity is not None and verity.filesystem == "none"
    assert verity.type_guid == "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5"
    # sha256 over 4 KiB blocks: 512 MiB of data needs 131072/128 + 8 + 1 tree blocks plus a
    # superblock, about 4.1 MiB, rounded up to 5 MiB.
    assert verity_size(512 * M) == 5 * M


def test_rest_root_leaves_room_for_its_verity_tree() -> None:
    disk = Disk(size=1 * G, partitions=(Partition("esp", "esp", 64 * M),
                                        Partition("root-verity", "verity", 16 * M),
                                        Partition("root", "root", None)))
    layout = plan_layout(disk, seed="x")
    assert layout.partitions[-1].end <= 1 * G - 1 * M
    assert layout.partitions[1].size >= verity_size(layout.root.size)


def test_gpt_refuses_more_partitions_than_its_entry_array_holds() -> None:
    """sfdisk writes 128 entries and silently drops the rest (issue 18, item 10)."""
    def disk(count: int) -> Disk:
        parts = [Partition(f"p{i}", "generic", 1 * M) for i in range(count - 1)]
        return Disk(partition_table="gpt", partitions=(*parts, Partition("root", "root", 8 * M)))

    assert len(plan_layout(disk(128), seed="x").partitions) == 128
    with pytest.raises(ValidationError, match="a GPT disk holds at most 128 partitions"):
        plan_layout(disk(129), seed="x")

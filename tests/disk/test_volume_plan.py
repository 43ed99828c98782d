"""Planning volume groups and LUKS2 containers: extents, offsets, sizes from content,
identifiers from the seed, and the errors of layouts that cannot be built (no tools)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecomposer.compose.disk import plan_layout
from imagecomposer.compose.layout import PlannedLogicalVolume, volume_device
from imagecomposer.foundation.errors import ValidationError
from imagecomposer.spec.model import Disk, Encryption, LogicalVolume, Partition, VolumeGroup

M = 1 << 20
G = 1 << 30
KEY = Encryption(passphrase_file=Path("/nonexistent/pass"))


def lvm_disk(*lvs: LogicalVolume, size: int | None = 1 * G, disk_size: int | None = None,
             encryption: Encryption | None = None, table: str = "gpt") -> Disk:
    parts = (Partition("esp", "esp", 64 * M),
             Partition("system", "lvm", size, filesystem="none", encryption=encryption,
                       volume_group=VolumeGroup("vg0", lvs)))
    return Disk(size=disk_size, partition_table=table, partitions=parts)  # type: ignore[arg-type]


def problems(disk: Disk, **kw: object) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        plan_layout(disk, seed="s", **kw)  # type: ignore[arg-type]
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


def test_logical_volumes_are_allocated_in_order() -> None:
    disk = lvm_disk(LogicalVolume("root", 510 * M, mountpoint="/"),
                    LogicalVolume("swap", 64 * M, filesystem="swap"),
                    LogicalVolume("var", None, mountpoint="/var"))
    layout = plan_layout(disk, seed="s")
    system = layout.partitions[1]
    group = system.volume_group
    assert group is not None and system.filesystem == "none" and system.type_guid == \
        "E6D6D379-F507-44C2-A23C-238F2A3DF928"
    assert (group.pe_start, group.extent_size, group.pv_size, group.pe_count) == \
        (M, 4 * M, G, 255)
    root, swap, var = group.logical_volumes
    assert (root.start_extent, root.extent_count, root.offset, root.size) == (0, 128, M, 512 * M)
    assert (swap.start_extent, swap.extent_count, swap.offset) == (128, 16, 513 * M)
    assert (var.start_extent, var.extent_count) == (144, 111)  # the rest of 255
    assert layout.root is root and root.mountpoint == "/"
    assert [v.name for v in layout.volumes()] == ["esp", "system", "root", "swap", "var"]
    assert volume_device(root) == "/dev/mapper/vg0-root"
    assert layout.holder(var) is system


def test_mapper_names_double_dashes() -> None:
    disk = Disk(partitions=(Partition("p", "lvm", 64 * M, filesystem="none",
                                      volume_group=VolumeGroup("my-vg", (
                                          LogicalVolume("my-root", None, mountpoint="/"),))),))
    root = plan_layout(disk, seed="s").root
    assert isinstance(root, PlannedLogicalVolume)
    assert root.device == "/dev/mapper/my--vg-my--root"


def test_identifiers_come_from_the_seed() -> None:
    disk = lvm_disk(LogicalVolume("root", 64 * M, mountpoint="/", encryption=KEY),
                    LogicalVolume("var", None, mountpoint="/var"))
    one, same, other = (plan_layout(disk, seed=s) for s in ("a", "a", "b"))
    assert one == same
    group, other_group = one.partitions[1].volume_group, other.partitions[1].volume_group
    assert group is not None and other_group is not None
    ids = {group.vgid, group.pvid, *(lv.lvid for lv in group.logical_volumes)}
    assert len(ids) == 4
    assert ids.isdisjoint({other_group.vgid, other_group.pvid})
    root = group.logical_volumes[0]
    assert root.encryption is not None and root.encryption.uuid != root.fsuuid
    assert root.encryption.mapper == "root_crypt" and root.encryption.initramfs
    assert volume_device(root) == "/dev/mapper/root_crypt"


def test_lvm_on_luks_leaves_the_reserve_free() -> None:
    disk = lvm_disk(LogicalVolume("root", None, mountpoint="/"), size=256 * M, encryption=KEY)
    part = plan_layout(disk, seed="s").partitions[1]
    assert part.encryption is not None and part.volume_group is not None
    assert part.encryption.initramfs  # holds the root's volume group
    assert part.volume_group.pv_size == part.encryption.opened_size == 240 * M
    assert part.volume_group.pe_count == 59  # (240 - 1) // 4
    assert part.volume_group.logical_volumes[0].extent_count == 55  # (256 - 32 - 1) // 4


def test_auto_sizes_from_content() -> None:
    disk = lvm_disk(LogicalVolume("root", None, mountpoint="/", encryption=KEY),
                    size=None, encryption=None)
    disk = Disk(size=None, partitions=(*disk.partitions[:1], Partition(
        "system", "lvm", None, filesystem="none", volume_group=VolumeGroup("vg0", (
            LogicalVolume("swap", 16 * M, filesystem="swap"),
            LogicalVolume("root", None, mountpoint="/", encryption=KEY),)))))
    layout = plan_layout(disk, seed="s", content_sizes={"esp": M, "root": 100 * M})
    system = layout.partitions[1]
    swap, root = system.volume_group.logical_volumes  # type: ignore[union-attr]
    # ext4: 100 MiB x 1.25 + 48 MiB = 173 MiB, + 32 MiB LUKS2 = 205 -> 208 (whole extents)
    assert root.size == 208 * M and swap.size == 16 * M
    assert system.size == M + 16 * M + 208 * M
    plain = Disk(size=None, partitions=(Partition("root", "root", None, encryption=KEY),))
    root_part = plan_layout(plain, seed="s", content_sizes={"root": 100 * M}).partitions[0]
    assert root_part.size == 173 * M + 32 * M
    assert root_part.encryption is not None and root_part.encryption.capacity == 173 * M


@pytest.mark.parametrize(("disk", "expected"), [
    (lvm_disk(LogicalVolume("root", 800 * M, mountpoint="/"),
              LogicalVolume("var", 300 * M, mountpoint="/var")),
     "disk.partitions[1].volume_group.logical_volumes[1].size: logical volume 'var' does not "
     "fit partition 'system'"),
    (lvm_disk(LogicalVolume("root", 1020 * M, mountpoint="/"),
              LogicalVolume("var", None, mountpoint="/var")),
     "disk.partitions[1].volume_group.logical_volumes[1].size: logical volume 'var' (size: "
     "rest) gets 0 MiB"),
    (lvm_disk(LogicalVolume("root", 1000 * M, mountpoint="/"), encryption=KEY),
     "logical volume 'root' does not fit partition 'system'"),
    (lvm_disk(LogicalVolume("big", 200 * M, filesystem="xfs", mountpoint="/srv",
                            encryption=KEY)),
     "disk.partitions[1].volume_group.logical_volumes[0].size: logical volume 'big' needs at "
     "least 332 MiB"),
    (lvm_disk(LogicalVolume("esp", 64 * M, mountpoint="/x")),
     "name 'esp' is used twice"),
    (lvm_disk(LogicalVolume("a", None, mountpoint="/a"), LogicalVolume("b", 64 * M)),
     "only the last logical volume may have size 'rest'"),
    (lvm_disk(LogicalVolume("srv", None, filesystem="xfs", label="thirteen-char")),
     "volume_group.logical_volumes[0].label: label 'thirteen-char' is longer than xfs allows "
     "(12 characters)"),
    (Disk(partitions=(Partition("root", "lvm", G),)),
     "disk.partitions[0].type: a partition of type lvm holds a volume_group, and only it"),
    (Disk(partitions=(Partition("root", "root", 16 * M, encryption=KEY),)),
     "disk.partitions[0].size: a ext4 filesystem with LUKS2 (32 MiB) needs at least 33 MiB"),
])
def test_layouts_that_cannot_be_built(disk: Disk, expected: str) -> None:
    found = problems(disk)
    assert any(expected in p for p in found), found


def test_auto_disk_needs_content_sizes_of_logical_volumes() -> None:
    disk = lvm_disk(LogicalVolume("root", None, mountpoint="/"), size=None)
    disk = Disk(size=None, partitions=disk.partitions)
    found = problems(disk, content_sizes={"esp": M})
    assert found == ["disk.partitions[1].volume_group.logical_volumes[0].size: disk.size is "
                     "auto but the content size of logical volume 'root' is unknown"]


def test_mbr_lvm_partition_is_8e() -> None:
    layout = plan_layout(lvm_disk(LogicalVolume("root", None, mountpoint="/"), table="mbr"),
                         seed="s")
    assert layout.partitions[1].type_guid == "8e"

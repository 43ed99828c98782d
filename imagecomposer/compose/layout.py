"""The planned disk layout: where each partition lives and how it is identified.

Planning happens before the root tree is configured because fstab, the kernel command line
(``root=``, dm-verity's root hash partition) and the bootloader entries need the
partition and filesystem UUIDs. Every identifier is derived deterministically from the spec
and the lock (no randomness), so a rebuild of the same inputs yields the same layout.
"""

from __future__ import annotations

import attrs

SECTOR = 512


@attrs.frozen
class PlannedPartition:
    name: str  # spec partition name
    type: str  # esp | root | swap | home | var | xbootldr | verity | generic | explicit GUID
    type_guid: str  # GPT type GUID (for MBR: the hex type code, e.g. "ef", "83")
    filesystem: str  # ext4 | xfs | vfat | swap | squashfs | erofs | none
    start: int  # bytes from the start of the disk, aligned to 1 MiB
    size: int  # bytes, a multiple of the sector size
    partuuid: str  # GPT partition UUID (MBR: "<disk id>-<nn>")
    fsuuid: str  # filesystem UUID (vfat: the 8-hex-digit volume id as "XXXX-XXXX")
    number: int  # 1-based partition number
    mountpoint: str | None = None
    label: str | None = None
    mount_options: str = "defaults"

    @property
    def end(self) -> int:
        return self.start + self.size


@attrs.frozen
class Layout:
    table: str  # gpt | mbr
    size: int  # whole disk in bytes
    disk_id: str  # GPT disk GUID or MBR disk id ("0x1234abcd")
    partitions: tuple[PlannedPartition, ...]

    def by_type(self, type_: str) -> PlannedPartition | None:
        return next((p for p in self.partitions if p.type == type_), None)

    @property
    def root(self) -> PlannedPartition:
        found = self.by_type("root") or next(
            (p for p in self.partitions if p.mountpoint == "/"), None)
        if found is None:
            raise ValueError("layout has no root partition")
        return found

    @property
    def esp(self) -> PlannedPartition | None:
        return self.by_type("esp")

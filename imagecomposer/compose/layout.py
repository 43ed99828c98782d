"""The planned disk layout: where each partition lives and how it is identified.

Planning happens before the root tree is configured because fstab, the kernel command line
(``root=``, dm-verity's root hash partition) and the bootloader entries need the
partition and filesystem UUIDs. Every identifier is derived deterministically from the spec
and the lock (no randomness), so a rebuild of the same inputs yields the same layout.

A partition may hold an LVM2 volume group (:class:`PlannedVolumeGroup`, its logical volumes
with their extents and offsets) and a LUKS2 container (:class:`PlannedEncryption`); a
logical volume may be encrypted too. :meth:`Layout.volumes` yields everything that holds a
filesystem; the layout is also what ``layout.json`` and the manifest record (for
``inspect``).
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

SECTOR = 512


@attrs.frozen
class PlannedEncryption:
    """A LUKS2 container around a partition's or logical volume's content.

    The content (a filesystem or an LVM physical volume) is written plain, then encrypted in
    place: its first ``data_offset`` bytes become the LUKS2 header, the opened device
    (``/dev/mapper/<mapper>``) is ``opened_size`` bytes, and the content occupies its first
    ``capacity`` bytes (``cryptsetup reencrypt --reduce-device-size`` needs twice the header
    free at the end before it moves the data).
    """

    uuid: str  # LUKS2 header UUID (blkid: UUID of the crypto_LUKS device)
    mapper: str  # device-mapper name when opened: /dev/mapper/<mapper>
    data_offset: int  # bytes of header before the encrypted data
    capacity: int  # bytes of content written (filesystem or PV size)
    opened_size: int  # bytes of the opened device
    unlock: str  # "passphrase" (typed at the console) | "key-file" (embedded in the image)
    initramfs: bool  # opened by the initramfs (it holds / or the volume group of /)
    type: str = "luks2"

    @property
    def device(self) -> str:
        return f"/dev/mapper/{self.mapper}"


@attrs.frozen
class PlannedLogicalVolume:
    """A linear logical volume: one segment of ``extent_count`` extents of its volume group's
    only physical volume, starting at extent ``start_extent``."""

    name: str  # LV name (unique among partitions and LVs: trees are keyed by it)
    vg: str  # volume group name
    lvid: str  # LVM id (32 characters in 6-4-4-4-4-4-6 groups)
    filesystem: str  # ext4 | xfs | vfat | swap | squashfs | erofs
    offset: int  # bytes from the start of the physical volume
    size: int  # bytes (extent_count x extent size)
    start_extent: int
    extent_count: int
    fsuuid: str
    mountpoint: str | None = None
    label: str | None = None
    mount_options: str = "defaults"
    encryption: PlannedEncryption | None = None

    @property
    def mapper(self) -> str:
        """The device-mapper name LVM gives it (dashes in the names doubled)."""
        return f"{self.vg.replace('-', '--')}-{self.name.replace('-', '--')}"

    @property
    def device(self) -> str:
        return f"/dev/mapper/{self.mapper}"


@attrs.frozen
class PlannedVolumeGroup:
    """An LVM2 volume group on one physical volume (the partition, or its LUKS2 container)."""

    name: str
    vgid: str  # LVM id of the volume group
    pvid: str  # LVM id of the physical volume
    extent_size: int  # bytes
    pe_start: int  # bytes from the start of the PV to its first extent
    pv_size: int  # bytes of the device the PV is on (the partition, or the opened LUKS2)
    pe_count: int  # extents of the PV (some may stay free)
    logical_volumes: tuple[PlannedLogicalVolume, ...] = ()


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
    encryption: PlannedEncryption | None = None
    volume_group: PlannedVolumeGroup | None = None  # an LVM physical volume (type lvm)

    @property
    def end(self) -> int:
        return self.start + self.size


# Something that holds a filesystem: a partition or a logical volume.
Volume = PlannedPartition | PlannedLogicalVolume


def volume_device(volume: Volume) -> str:
    """How fstab, crypttab and root= name the device holding ``volume``'s filesystem:
    ``UUID=`` for a plain partition, else the device-mapper path (LV or opened LUKS2)."""
    if volume.encryption is not None:
        return volume.encryption.device
    if isinstance(volume, PlannedLogicalVolume):
        return volume.device
    return f"UUID={volume.fsuuid}"


@attrs.frozen
class Layout:
    table: str  # gpt | mbr
    size: int  # whole disk in bytes
    disk_id: str  # GPT disk GUID or MBR disk id ("0x1234abcd")
    partitions: tuple[PlannedPartition, ...]

    def by_type(self, type_: str) -> PlannedPartition | None:
        return next((p for p in self.partitions if p.type == type_), None)

    def volumes(self) -> Iterator[Volume]:
        """Every partition and logical volume, in disk order (LVs after their partition)."""
        for part in self.partitions:
            yield part
            if part.volume_group is not None:
                yield from part.volume_group.logical_volumes

    def volume(self, name: str) -> Volume:
        found = next((v for v in self.volumes() if v.name == name), None)
        if found is None:
            raise KeyError(name)
        return found

    def logical_volumes(self) -> Iterator[PlannedLogicalVolume]:
        for part in self.partitions:
            if part.volume_group is not None:
                yield from part.volume_group.logical_volumes

    def encrypted(self) -> Iterator[Volume]:
        """Every LUKS2-encrypted partition or logical volume."""
        return (v for v in self.volumes() if v.encryption is not None)

    def holder(self, lv: PlannedLogicalVolume) -> PlannedPartition:
        """The partition whose volume group holds ``lv``."""
        return next(p for p in self.partitions if p.volume_group is not None
                    and lv in p.volume_group.logical_volumes)

    @property
    def root(self) -> Volume:
        """The volume mounted at / (a partition of type root, or a logical volume)."""
        found: Volume | None = self.by_type("root") or next(
            (v for v in self.volumes() if v.mountpoint == "/"), None)
        if found is None:
            raise ValueError("layout has no root partition")
        return found

    @property
    def root_partition(self) -> PlannedPartition:
        """The root when it is a partition (dm-verity, BIOS GRUB need one)."""
        root = self.root
        if not isinstance(root, PlannedPartition):
            raise ValueError("the root filesystem is on a logical volume, not a partition")
        return root

    @property
    def esp(self) -> PlannedPartition | None:
        return self.by_type("esp")

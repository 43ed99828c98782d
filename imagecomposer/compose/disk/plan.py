"""Plan a disk layout from the spec: offsets, sizes, type GUIDs and every identifier.

Planning runs before the root tree is configured, because fstab, ``root=`` and the
bootloader entries need the partition and filesystem UUIDs. It is a pure function of the
spec's ``disk`` section, the content sizes and a seed (the caller passes a hash of the spec
and the lock), so the same inputs always give the same layout: identifiers are UUIDv5 of
the seed and the partition name, never random.

Sizes are aligned to 1 MiB. On GPT the last MiB stays free for the backup header (33
sectors); on MBR the last partition may run to the end of the disk.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping

from imagecomposer.compose.disk import types
from imagecomposer.compose.layout import SECTOR, Layout, PlannedPartition
from imagecomposer.foundation.errors import Problem, ValidationError
from imagecomposer.spec.combinations import GPT_MAX_PARTITIONS
from imagecomposer.spec.model import Disk, Partition

MIB = 1 << 20
ALIGN = MIB
# The namespace of every derived identifier; changing it changes every UUID we make.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "imagecomposer:disk")

DEFAULT_MOUNTPOINTS = {"root": "/", "home": "/home", "var": "/var", "xbootldr": "/boot",
                       "esp": "/boot/efi"}
DEFAULT_FILESYSTEMS = {"esp": "vfat", "xbootldr": "vfat", "swap": "swap", "verity": "none"}
LABEL_LIMITS = {"ext4": 16, "xfs": 12, "vfat": 11, "swap": 15, "erofs": 15, "squashfs": 0,
                "none": 0}
FAT32_MIN = 36 * MIB  # below this a FAT partition is FAT16 or FAT12 (FAT32 needs 65525 clusters)
XFS_MIN = 300 * MIB  # mkfs.xfs refuses smaller filesystems
VERITY_BLOCK = 4096
VERITY_DIGEST = 32  # sha256


def plan_layout(disk: Disk, *, seed: str, content_sizes: Mapping[str, int] | None = None,
                arch: str = "x86_64") -> Layout:
    """Plan ``disk``: every partition's place, type and identifiers.

    ``content_sizes`` maps a partition name to the bytes of the tree that will fill it; it is
    needed for partitions without an explicit size when ``disk.size`` is auto (None).
    Raises :class:`ValidationError` with one problem per mistake.
    """
    content = dict(content_sizes or {})
    _check(disk, arch)
    table = disk.partition_table
    reserve_end = ALIGN if table == "gpt" else 0
    sizes: dict[str, int] = {}
    problems: list[Problem] = []
    rest: Partition | None = None
    for index, part in enumerate(disk.partitions):
        path = f"disk.partitions[{index}]"
        fs = filesystem_of(part)
        if part.type == "verity":
            continue  # sized from its data partition below
        if part.size is not None:
            sizes[part.name] = align_up(part.size)
            minimum = _minimum(fs)
            if sizes[part.name] < minimum:
                problems.append(Problem(f"a {fs} filesystem needs at least "
                                        f"{minimum // MIB} MiB", path=f"{path}.size"))
        elif disk.size is not None:
            rest = part
        elif fs == "swap":
            problems.append(Problem("a swap partition needs an explicit size when disk.size "
                                    "is auto", path=f"{path}.size"))
        elif part.name not in content:
            problems.append(Problem(f"disk.size is auto but the content size of partition "
                                    f"'{part.name}' is unknown", path=f"{path}.size"))
        else:
            sizes[part.name] = auto_size(fs, content[part.name])
    if problems:
        raise ValidationError(problems)

    verity = next((p for p in disk.partitions if p.type == "verity"), None)
    data = _verity_data(disk) if verity is not None else None
    fixed = sum(sizes.values())
    if rest is not None:
        assert disk.size is not None
        available = align_down(disk.size) - ALIGN - reserve_end - fixed
        if verity is not None and verity.size is not None:
            available -= align_up(verity.size)
        if verity is not None and verity.size is None and data is rest:
            available -= verity_size(available)
        if available < max(ALIGN, _minimum(filesystem_of(rest))):
            raise ValidationError([Problem(
                f"disk.size {disk.size} B leaves {max(available, 0)} B for partition "
                f"'{rest.name}' (size: rest), too little", path="disk.size")])
        sizes[rest.name] = align_down(available)
    if verity is not None and data is not None:
        needed = verity_size(sizes[data.name])
        if verity.size is not None:
            if align_up(verity.size) < needed:
                raise ValidationError([Problem(
                    f"verity partition '{verity.name}' needs {needed} B for the hash tree of "
                    f"'{data.name}'", path="disk.partitions.size")])
            sizes[verity.name] = align_up(verity.size)
        else:
            sizes[verity.name] = needed

    total_needed = ALIGN + sum(sizes.values()) + reserve_end
    if disk.size is None:
        disk_size = total_needed
    else:
        disk_size = align_up(disk.size)
        if total_needed > disk_size:
            raise ValidationError([Problem(
                f"the partitions need {total_needed} B but disk.size is {disk.size} B",
                path="disk.size")])

    disk_id = derive_disk_id(seed, table)
    planned: list[PlannedPartition] = []
    offset = ALIGN
    for number, part in enumerate(disk.partitions, start=1):
        fs = filesystem_of(part)
        size = sizes[part.name]
        type_guid = (types.gpt_type(part.type, arch) if table == "gpt"
                     else types.mbr_type(part.type))
        if table == "gpt":
            partuuid = (part.uuid or derive_uuid(seed, "partition", part.name)).lower()
        else:
            partuuid = f"{disk_id.removeprefix('0x')}-{number:02x}"
        planned.append(PlannedPartition(
            name=part.name, type=part.type, type_guid=type_guid, filesystem=fs,
            start=offset, size=size, partuuid=partuuid,
            fsuuid=derive_fsuuid(seed, part.name, fs), number=number,
            mountpoint=part.mountpoint or DEFAULT_MOUNTPOINTS.get(part.type),
            label=part.label, mount_options=part.mount_options))
        offset += size
    return Layout(table=table, size=disk_size, disk_id=disk_id, partitions=tuple(planned))


def filesystem_of(part: Partition) -> str:
    """The filesystem a partition gets: ESPs are FAT and verity partitions hold no fs.

    The spec defaults ``filesystem`` to ext4, which is wrong for those types, so the type
    wins when the spec left the default in place.
    """
    if part.type == "verity":
        return "none"
    if part.type in DEFAULT_FILESYSTEMS and part.filesystem == "ext4":
        return DEFAULT_FILESYSTEMS[part.type]
    return part.filesystem


def auto_size(filesystem: str, content: int) -> int:
    """Partition size for ``content`` bytes of tree: content plus the filesystem's overhead.

    Margins were chosen so that ``mkfs -d`` of a Debian root tree never runs out of blocks
    or inodes (ext4 keeps 5 % reserved and needs a journal); read-only compressed
    filesystems get the uncompressed size plus metadata as an upper bound.
    """
    if filesystem == "ext4":
        size = content * 1.25 + 48 * MIB
    elif filesystem == "xfs":
        size = max(content * 1.25 + 64 * MIB, XFS_MIN)
    elif filesystem == "vfat":
        size = content * 1.1 + 8 * MIB
    elif filesystem in ("squashfs", "erofs"):
        size = content * 1.05 + 4 * MIB
    else:
        size = content
    return align_up(max(math.ceil(size), ALIGN))


def verity_size(data_size: int) -> int:
    """Bytes a sha256/4096 dm-verity hash tree (plus its superblock) needs for the data."""
    blocks = math.ceil(data_size / VERITY_BLOCK)
    per_block = VERITY_BLOCK // VERITY_DIGEST
    total = 1  # the verity superblock
    while True:
        blocks = math.ceil(blocks / per_block)
        total += blocks
        if blocks <= 1:
            break
    return align_up(total * VERITY_BLOCK)


def align_up(value: int, alignment: int = ALIGN) -> int:
    return -(-value // alignment) * alignment


def align_down(value: int, alignment: int = ALIGN) -> int:
    return value // alignment * alignment


def derive_uuid(seed: str, kind: str, name: str) -> str:
    """A UUID that depends only on the seed, what it identifies, and the partition name."""
    return str(uuid.uuid5(NAMESPACE, f"{seed}\0{kind}\0{name}"))


def derive_fsuuid(seed: str, name: str, filesystem: str) -> str:
    """The filesystem UUID in the form ``blkid`` reports for that filesystem."""
    if filesystem in ("none", "squashfs"):
        # squashfs has no UUID field; verity partitions get their superblock UUID in assembly.
        return derive_uuid(seed, "verity", name) if filesystem == "none" else ""
    if filesystem == "vfat":
        digest = hashlib.sha256(f"{seed}\0volume-id\0{name}".encode()).hexdigest()[:8].upper()
        return f"{digest[:4]}-{digest[4:]}"
    return derive_uuid(seed, "filesystem", name)


def derive_disk_id(seed: str, table: str) -> str:
    if table == "gpt":
        return derive_uuid(seed, "disk", "")
    digest = hashlib.sha256(f"{seed}\0mbr-disk-id".encode()).hexdigest()[:8]
    return "0x" + (digest if int(digest, 16) else "00000001")


def _minimum(filesystem: str) -> int:
    return XFS_MIN if filesystem == "xfs" else ALIGN


def _verity_data(disk: Disk) -> Partition:
    root = next((p for p in disk.partitions if p.type == "root"), None)
    if root is None:
        raise ValidationError([Problem("a verity partition needs a root partition to protect",
                                       path="disk.partitions")])
    return root


def _check(disk: Disk, arch: str) -> None:
    problems: list[Problem] = []
    if not disk.partitions:
        problems.append(Problem("the disk has no partitions", path="disk.partitions"))
    names = [p.name for p in disk.partitions]
    for index, part in enumerate(disk.partitions):
        path = f"disk.partitions[{index}]"
        if names.count(part.name) > 1 and names.index(part.name) == index:
            problems.append(Problem(f"partition name '{part.name}' is used twice",
                                    path=f"{path}.name"))
        if part.size is None and index != len(disk.partitions) - 1:
            problems.append(Problem("only the last partition may have size 'rest'",
                                    path=f"{path}.size"))
        if part.size is None and part.type == "verity":
            problems.append(Problem("a verity partition cannot be 'rest' (its size follows "
                                    "from the data it protects)", path=f"{path}.size"))
        fs = filesystem_of(part)
        if (part.type == "swap") != (fs == "swap"):
            problems.append(Problem("swap partitions take filesystem 'swap' and vice versa",
                                    path=f"{path}.filesystem"))
        if part.type == "esp" and fs != "vfat":
            problems.append(Problem("an ESP must be vfat", path=f"{path}.filesystem"))
        if part.label is not None and len(part.label) > LABEL_LIMITS.get(fs, 36):
            problems.append(Problem(f"label '{part.label}' is longer than {fs} allows "
                                    f"({LABEL_LIMITS.get(fs, 36)} characters)",
                                    path=f"{path}.label"))
        if part.uuid is not None and disk.partition_table == "mbr":
            problems.append(Problem("MBR partitions have no UUID of their own (PARTUUID is "
                                    "derived from the disk id)", path=f"{path}.uuid"))
        if part.uuid is not None and not types.is_guid(part.uuid):
            problems.append(Problem(f"'{part.uuid}' is not a UUID", path=f"{path}.uuid"))
        try:
            if disk.partition_table == "gpt":
                types.gpt_type(part.type, arch, path=f"{path}.type")
            else:
                types.mbr_type(part.type, path=f"{path}.type")
        except ValidationError as exc:
            problems.extend(exc.problems)
    if disk.partition_table == "mbr" and len(disk.partitions) > 4:
        problems.append(Problem("an MBR disk holds at most 4 partitions (no extended "
                                "partitions); use GPT", path="disk.partitions"))
    if disk.partition_table == "gpt" and len(disk.partitions) > GPT_MAX_PARTITIONS:
        # sfdisk writes the standard 128-entry array and silently drops the rest
        problems.append(Problem(f"a GPT disk holds at most {GPT_MAX_PARTITIONS} partitions",
                                path="disk.partitions"))
    if sum(1 for p in disk.partitions if p.type == "verity") > 1:
        problems.append(Problem("only one verity partition is supported",
                                path="disk.partitions"))
    if disk.size is not None and disk.size <= 0:
        problems.append(Problem("disk.size must be positive", path="disk.size"))
    if problems:
        raise ValidationError(problems)


def sectors(value: int) -> int:
    """Bytes to 512-byte sectors (sizes here are always sector multiples)."""
    return value // SECTOR

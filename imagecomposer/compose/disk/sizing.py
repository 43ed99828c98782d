"""Sizes and identifiers every part of disk planning shares (pure functions of their
arguments): 1 MiB alignment, partition sizes from content, the dm-verity tree size, and
the UUIDs derived from the layout seed."""

from __future__ import annotations

import hashlib
import math
import uuid

from imagecomposer.spec.model import Partition

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


def minimum(filesystem: str) -> int:
    return XFS_MIN if filesystem == "xfs" else ALIGN

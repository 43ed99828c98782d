"""What filesystem a partition holds (``blkid -p`` at its offset) and how full it is (each
filesystem's own superblock, read from the disk file; ``mdir`` for FAT's free space)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import attrs

from imagecomposer.foundation import runner
from imagecomposer.inspect.fs_fat import fat_free_bytes


@attrs.frozen
class Probed:
    type: str | None  # ext4, vfat, xfs, squashfs, erofs, swap, DM_verity_hash, ... or None
    uuid: str | None
    label: str | None
    size: int | None  # bytes the filesystem spans
    used: int | None  # bytes in use


def probe(disk: Path, offset: int, length: int) -> Probed:
    runner.require("blkid", "util-linux")
    done = runner.run(["blkid", "-p", "-o", "export", "-O", str(offset), "--size",
                       str(length), disk], capture=True, check=False, what="blkid")
    values = dict(line.split("=", 1) for line in done.stdout.decode("utf-8", "replace")
                  .splitlines() if "=" in line)
    fstype = values.get("TYPE")
    if fstype in ("ext2", "ext3"):
        fstype = "ext4"  # one reader for the family; the superblock tells the features
    size, used = _usage(disk, offset, fstype) if fstype else (None, None)
    return Probed(fstype, values.get("UUID"), values.get("LABEL"), size, used)


def _usage(disk: Path, offset: int, fstype: str) -> tuple[int | None, int | None]:
    with disk.open("rb") as handle:
        fd = handle.fileno()
        if fstype == "ext4":
            sb = os.pread(fd, 1024, offset + 1024)
            block = 1024 << struct.unpack_from("<I", sb, 0x18)[0]
            blocks = struct.unpack_from("<I", sb, 0x04)[0]
            free = struct.unpack_from("<I", sb, 0x0C)[0]
            if struct.unpack_from("<I", sb, 0x60)[0] & 0x80:  # INCOMPAT_64BIT
                blocks |= struct.unpack_from("<I", sb, 0x150)[0] << 32
                free |= struct.unpack_from("<I", sb, 0x158)[0] << 32
            return blocks * block, (blocks - free) * block
        if fstype == "vfat":
            boot = os.pread(fd, 512, offset)
            sectors = struct.unpack_from("<H", boot, 0x13)[0] or struct.unpack_from(
                "<I", boot, 0x20)[0]
            size = sectors * struct.unpack_from("<H", boot, 0x0B)[0]
            free = fat_free_bytes(disk, offset)
            return size, (size - free if free is not None else None)
        if fstype == "squashfs":
            used = struct.unpack_from("<Q", os.pread(fd, 96, offset), 40)[0]
            return used, used
        if fstype == "erofs":
            sb = os.pread(fd, 64, offset + 1024)
            size = struct.unpack_from("<I", sb, 0x24)[0] << sb[0x0C]
            return size, size
        if fstype == "xfs":
            sb = os.pread(fd, 512, offset)
            block = struct.unpack_from(">I", sb, 4)[0]
            blocks, free = struct.unpack_from(">Q", sb, 8)[0], struct.unpack_from(">Q", sb, 144)[0]
            return blocks * block, (blocks - free) * block
        if fstype == "swap":
            page = os.sysconf("SC_PAGE_SIZE")
            pages = struct.unpack_from("<I", os.pread(fd, 1024, offset + 1024), 4)[0]
            return (pages + 1) * page, 0
    return None, None

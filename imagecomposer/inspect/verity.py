"""dm-verity: the hash partition's superblock, the root hash the kernel command line passes,
and whether the data partition still hashes to it.

``veritysetup verify`` needs no device mapper and no root: the hash device is the disk file
itself (``--hash-offset`` = the hash partition's start); the data must start at byte 0, so
the data partition is copied out sparsely first.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path

from imagecomposer.compose.disk.sparse import copy_out
from imagecomposer.compose.disk.verity import verify
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import DiskToolError
from imagecomposer.inspect.partitions import Partition
from imagecomposer.inspect.report import VerityInfo, VeritySuperblock

MAGIC = b"verity\0\0"


def read_superblock(disk: Path, offset: int) -> VeritySuperblock | None:
    with disk.open("rb") as handle:
        handle.seek(offset)
        raw = handle.read(512)
    if len(raw) < 512 or not raw.startswith(MAGIC):
        return None
    version, hash_type = struct.unpack_from("<II", raw, 8)
    algorithm = raw[32:64].split(b"\0", 1)[0].decode("ascii", "replace")
    data_bs, hash_bs, blocks, salt_size = struct.unpack_from("<IIQH", raw, 64)
    return VeritySuperblock(version, hash_type, str(uuid.UUID(bytes=raw[16:32])), algorithm,
                            data_bs, hash_bs, blocks, raw[88:88 + salt_size].hex())


def _option(cmdlines: Sequence[str], name: str) -> str | None:
    for line in cmdlines:
        match = re.search(rf"(?:^|\s){re.escape(name)}=(\S+)", line)
        if match:
            return match.group(1)
    return None


def _data_partition(hash_part: Partition, partitions: Sequence[Partition],
                    cmdlines: Sequence[str]) -> Partition | None:
    named = _option(cmdlines, "systemd.verity_root_data")
    if named and "by-partuuid/" in named:
        wanted = named.rsplit("/", 1)[1].lower()
        found = next((p for p in partitions if p.uuid == wanted), None)
        if found is not None:
            return found
    roots = [p for p in partitions if p.type == "root"]
    if len(roots) == 1:
        return roots[0]
    earlier = [p for p in partitions if p.start < hash_part.start and p.type != "verity"]
    return earlier[-1] if earlier else None


def check_verity(disk: Path, disk_offset: int, partitions: Sequence[Partition],
                 cmdlines: Sequence[str], scratch: Path, *, verify_data: bool = True
                 ) -> list[VerityInfo]:
    found: list[VerityInfo] = []
    for part in partitions:
        superblock = read_superblock(disk, disk_offset + part.start)
        if superblock is None:
            continue
        roothash = _option(cmdlines, "roothash") or _option(cmdlines, "usrhash")
        data = _data_partition(part, partitions, cmdlines)
        status, detail = "unchecked", None
        if roothash is None:
            status, detail = "no-roothash", "no roothash= on any kernel command line"
        elif data is None:
            status, detail = "no-data", "no data partition found for the hash partition"
        elif superblock.data_blocks * superblock.data_block_size > data.size:
            status, detail = "mismatch", "the hash tree covers more than the data partition"
        elif verify_data:
            status, detail = _verify(disk, disk_offset, data, part, superblock, roothash,
                                     scratch)
        found.append(VerityInfo(data.number if data else None, part.number, roothash,
                                superblock, status, detail))
    return found


def _verify(disk: Path, disk_offset: int, data: Partition, hash_part: Partition,
            superblock: VeritySuperblock, roothash: str, scratch: Path) -> tuple[str, str | None]:
    runner.require("veritysetup", "cryptsetup-bin")
    piece = scratch / f"verity-data-{data.number}.img"
    copy_out(disk, disk_offset + data.start,
             superblock.data_blocks * superblock.data_block_size, piece)
    try:
        verify(piece, disk, roothash, hash_offset=disk_offset + hash_part.start)
    except DiskToolError as exc:
        lines = [line for line in exc.stderr_tail.splitlines() if line.strip()]
        return "mismatch", lines[-1].strip() if lines else str(exc)
    finally:
        piece.unlink(missing_ok=True)
    return "verified", None

"""The partition table, read from the disk's bytes: GPT (header and entry CRCs checked) or MBR
(primary and logical partitions).

Why not ``sfdisk --json`` (what :func:`imagecomposer.compose.disk.table.read_table` uses on
disks it has just written)? On a truncated image whose backup GPT is gone, sfdisk falls back
to the protective MBR and reports one partition of type ``ee``; here the primary header's
own fields say how big the disk should be, which gives a precise "Truncated image" error.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import attrs

from imagecomposer.compose.disk import types as ptypes
from imagecomposer.foundation.errors import NoPartitionTable, TruncatedImage

SECTOR = 512
Reader = Callable[[int, int], bytes]  # (offset, length) -> bytes
_GPT_NAMES = {ptypes.ESP: "esp", ptypes.XBOOTLDR: "xbootldr", ptypes.SWAP: "swap",
              ptypes.HOME: "home", ptypes.VAR: "var", ptypes.LINUX_GENERIC: "generic",
              "21686148-6449-6E6F-744E-656564454649": "bios-boot",
              "8DA63339-0007-60C0-C436-083AC8230908": "linux-reserved",
              "E6D6D379-F507-44C2-A23C-238F2A3DF928": "lvm",
              "A19D880F-05FC-4D3B-A006-743F0F84911E": "raid",
              "CA7D7CCB-63ED-4C53-861C-1742536059CC": "luks",
              "3B8F8425-20E0-4F3B-907F-1A25A76F98E8": "srv",
              "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "microsoft-basic-data"}
for _arch, _guid in ptypes.ROOT.items():
    _GPT_NAMES[_guid] = "root"
for _arch, _guid in ptypes.ROOT_VERITY.items():
    _GPT_NAMES[_guid] = "verity"
_MBR_NAMES = {"ef": "esp", "ea": "xbootldr", "82": "swap", "83": "linux", "8e": "lvm",
              "fd": "raid", "ee": "gpt-protective", "0c": "fat32", "0b": "fat32", "07": "ntfs",
              "05": "extended", "0f": "extended", "85": "extended"}


@attrs.frozen
class Partition:
    number: int  # 1-based, as the kernel numbers it
    name: str  # GPT partition name ("" on MBR)
    type_id: str  # GPT type GUID (upper case) or MBR type code (two hex digits)
    type: str  # what the type means: esp, root, verity, var, swap, linux, ... or "unknown"
    uuid: str | None  # GPT partition UUID (lower case); MBR: SIGNATURE-NN as Linux names it
    start: int  # bytes from the start of the disk
    size: int  # bytes
    bootable: bool = False  # MBR active flag, or GPT legacy BIOS bootable attribute (bit 2)
    attributes: int = 0  # GPT attribute bits

    @property
    def label(self) -> str:
        return self.name or f"partition {self.number}"


@attrs.frozen
class PartitionTable:
    type: str  # gpt, mbr, none (a bare filesystem image)
    id: str | None  # GPT disk GUID (lower case) or MBR disk signature (0x12345678)
    sector_size: int
    disk_size: int  # bytes the table describes (GPT: up to the backup header)
    partitions: tuple[Partition, ...]


def read_table(path: Path, offset: int, size: int) -> PartitionTable:
    """The partition table of the ``size`` bytes of ``path`` at ``offset``."""
    with path.open("rb") as handle:
        fd = handle.fileno()

        def read(at: int, length: int) -> bytes:
            return os.pread(fd, length, offset + at) if at < size else b""

        mbr = read(0, SECTOR)
        if len(mbr) < SECTOR:
            raise TruncatedImage(f"Truncated image: {path} is {size} bytes, too short for a "
                                 "partition table")
        for sector in (512, 4096):
            header = read(sector, 92)
            if header[:8] == b"EFI PART":
                table = _gpt(path, read, header, sector, size)
                break
        else:
            if mbr[510:512] != b"\x55\xaa" or not _mbr_entries(mbr):
                raise NoPartitionTable(f"No partition table: {path} holds neither a GPT nor "
                                       "an MBR partition table")
            table = _mbr(read, mbr)
    _check_fits(path, table, size)
    return table


def bare(size: int) -> PartitionTable:
    """A whole-disk filesystem: one pseudo partition covering everything."""
    return PartitionTable("none", None, SECTOR, size,
                          (Partition(1, "", "", "filesystem", None, 0, size),))


def _gpt(path: Path, read: Reader, header: bytes, sector: int, size: int) -> PartitionTable:
    (_sig, _rev, hsize, hcrc, _res, _cur, backup, _first, _last, guid, entries_lba, count,
     esize, ecrc) = struct.unpack_from("<8sIIII QQQQ 16s QIII".replace(" ", ""), header)
    full = read(sector, hsize)
    check = full[:16] + b"\0\0\0\0" + full[20:hsize]
    if len(full) < hsize or zlib.crc32(check) != hcrc:
        raise NoPartitionTable(f"No partition table: the GPT header of {path} is damaged "
                               "(CRC mismatch)")
    table = read(entries_lba * sector, count * esize)
    if len(table) < count * esize:
        raise TruncatedImage(f"Truncated image: {path} ends inside its GPT partition entries")
    if zlib.crc32(table) != ecrc:
        raise NoPartitionTable(f"No partition table: the GPT partition entries of {path} are "
                               "damaged (CRC mismatch)")
    parts: list[Partition] = []
    for index in range(count):
        entry = table[index * esize:(index + 1) * esize]
        type_guid = str(uuid.UUID(bytes_le=entry[:16])).upper()
        if type_guid == "00000000-0000-0000-0000-000000000000":
            continue
        part_guid = str(uuid.UUID(bytes_le=entry[16:32]))
        start_lba, end_lba, attrs_ = struct.unpack_from("<QQQ", entry, 32)
        name = entry[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
        parts.append(Partition(index + 1, name, type_guid, _GPT_NAMES.get(type_guid, "unknown"),
                               part_guid, start_lba * sector, (end_lba - start_lba + 1) * sector,
                               bool(attrs_ & 4), attrs_))
    return PartitionTable("gpt", str(uuid.UUID(bytes_le=guid)), sector,
                          (backup + 1) * sector, tuple(parts))


def _mbr_entries(mbr: bytes) -> list[tuple[int, str, int, int]]:
    found = []
    for slot in range(4):
        status, code, start, count = struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * slot)
        if code and count:
            found.append((status, f"{code:02x}", start, count))
    return found


def _mbr(read: Reader, mbr: bytes) -> PartitionTable:
    parts: list[Partition] = []
    logical = 5
    signature = struct.unpack_from("<I", mbr, 440)[0]

    def partuuid(number: int) -> str:  # what Linux (and blkid) call an MBR PARTUUID
        return f"{signature:08x}-{number:02x}"

    for slot, (status, code, start, count) in enumerate(_mbr_entries(mbr), start=1):
        if _MBR_NAMES.get(code) != "extended":
            parts.append(Partition(slot, "", code, _MBR_NAMES.get(code, "unknown"),
                                   partuuid(slot), start * SECTOR, count * SECTOR,
                                   status == 0x80))
            continue
        ebr_lba, seen = start, set[int]()
        while ebr_lba and ebr_lba not in seen and len(seen) < 128:
            seen.add(ebr_lba)
            ebr = read(ebr_lba * SECTOR, SECTOR)
            if ebr[510:512] != b"\x55\xaa":
                break
            entries = _mbr_entries(ebr)
            if not entries:
                break
            l_status, l_code, l_start, l_count = entries[0]
            parts.append(Partition(logical, "", l_code, _MBR_NAMES.get(l_code, "unknown"),
                                   partuuid(logical), (ebr_lba + l_start) * SECTOR,
                                   l_count * SECTOR, l_status == 0x80))
            logical += 1
            ebr_lba = start + entries[1][2] if len(entries) > 1 else 0
    disk_id = f"0x{signature:08x}"
    end = max((p.start + p.size for p in parts), default=0)
    return PartitionTable("mbr", disk_id, SECTOR, end, tuple(parts))


def _check_fits(path: Path, table: PartitionTable, size: int) -> None:
    for part in table.partitions:
        if part.start + part.size > size:
            raise TruncatedImage(
                f"Truncated image: {path} is {size} bytes, but partition {part.number} "
                f"({part.name or part.type}) ends at byte {part.start + part.size}")
    if table.type == "gpt" and table.disk_size > size:
        raise TruncatedImage(f"Truncated image: {path} is {size} bytes, but its GPT describes "
                             f"a disk of {table.disk_size} bytes (the backup GPT is missing)")

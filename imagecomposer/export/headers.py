"""Deterministic identifiers and times in the headers ``qemu-img convert`` writes.

qemu-img (7.2) gives every vhd, vhdx, vmdk and vdi file random identifiers, and vhd files the
creation time; qcow2 and raw files carry neither. Nothing selects them on the command line,
so :func:`stamp` rewrites those fields after the conversion, in place, with values derived
from the image's identity (the SHA-256 of the raw disk) and the build epoch, and fixes the
checksums that cover them:

========== ===================================================================================
vhd        footer (at the end, and its copy at offset 0 of a dynamic disk): ``Timestamp`` =
           the epoch (seconds since 2000-01-01), ``Unique Id``; the footer checksum
vhdx       both headers: ``SequenceNumber`` (1 and 2, order kept), ``FileWriteGuid``,
           ``DataWriteGuid`` and their CRC-32C; the log (unused: ``LogGuid`` is zero) zeroed;
           the metadata item ``Page83Data`` (the virtual disk id)
vmdk       ``CID`` in the embedded descriptor (monolithicSparse and streamOptimized)
vdi        ``uuid_image`` and ``uuid_last_snap`` (``uuid_link``/``uuid_parent`` stay zero)
========== ===================================================================================

Identifiers are name-based UUIDs (version 5) of the identity, the format and the field: two
exports of the same disk get the same ones, two different disks different ones (a
hypervisor that registers disks by id, like VirtualBox, can hold both).
"""

from __future__ import annotations

import os
import re
import struct
import uuid
from pathlib import Path

from imagecomposer.foundation.errors import ExportError

STAMPED = frozenset({"vhd", "vhd-fixed", "vhdx", "vmdk", "vmdk-stream", "vdi"})
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://imagecomposer/export/headers")
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z, the zero of a vhd timestamp
KIB = 1024
MIB = 1 << 20


def derived_uuid(identity: str, fmt: str, field: str) -> uuid.UUID:
    """The identifier ``field`` of an ``fmt`` file of the disk ``identity``."""
    return uuid.uuid5(NAMESPACE, f"{identity}:{fmt}:{field}")


def stamp(path: Path, fmt: str, *, identity: str, epoch: int) -> None:
    """Give the ``fmt`` file ``path`` the identifiers of ``identity`` and the time ``epoch``;
    nothing for formats without such fields (raw, qcow2)."""
    if fmt not in STAMPED:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        if fmt in ("vhd", "vhd-fixed"):
            _vhd(fd, identity, epoch)
        elif fmt == "vhdx":
            _vhdx(fd, identity)
        elif fmt in ("vmdk", "vmdk-stream"):
            _vmdk(fd, identity)
        else:
            _vdi(fd, identity)
    except (struct.error, ValueError) as exc:
        raise ExportError(f"{path} is not a {fmt} file as qemu-img writes it: {exc}") from None
    finally:
        os.close(fd)


def _read(fd: int, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise ValueError(f"short read at {offset}")
    return data


def _write(fd: int, offset: int, data: bytes) -> None:
    if os.pwrite(fd, data, offset) != len(data):
        raise ValueError(f"short write at {offset}")


# --- vhd (Virtual Hard Disk Image Format Specification, footer: big-endian) -------------------

def vhd_checksum(footer: bytes) -> int:
    """One's complement of the byte sum, the checksum field (64..67) counted as zero."""
    return ~sum(footer[:64] + footer[68:]) & 0xFFFFFFFF


def _vhd(fd: int, identity: str, epoch: int) -> None:
    size = os.fstat(fd).st_size
    stamp_time = min(max(epoch - VHD_EPOCH, 0), 0xFFFFFFFF)
    unique = derived_uuid(identity, "vhd", "unique id").bytes
    places = [size - 512]
    if _read(fd, 0, 8) == b"conectix":  # a dynamic disk starts with a copy of its footer
        places.insert(0, 0)
    for offset in places:
        footer = bytearray(_read(fd, offset, 512))
        if footer[:8] != b"conectix":
            raise ValueError(f"no vhd footer at {offset}")
        struct.pack_into(">I", footer, 24, stamp_time)
        footer[68:84] = unique
        struct.pack_into(">I", footer, 64, vhd_checksum(bytes(footer)))
        _write(fd, offset, bytes(footer))


# --- vhdx (MS-VHDX: little-endian, GUIDs in Microsoft byte order) ------------------------------

HEADERS = (64 * KIB, 128 * KIB)
REGION_TABLE = 192 * KIB
HEADER_SIZE = 4 * KIB
METADATA_REGION = uuid.UUID("8b7ca206-4790-4b9a-b8fe-575f050f886e")
PAGE83 = uuid.UUID("beca12ab-b2e6-4523-93ef-c309e000c746")


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as VHDX checksums its headers and region tables."""
    crc = 0xFFFFFFFF
    table = CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _vhdx(fd: int, identity: str) -> None:
    if _read(fd, 0, 8) != b"vhdxfile":
        raise ValueError("no vhdx file identifier")
    headers = [bytearray(_read(fd, at, HEADER_SIZE)) for at in HEADERS]
    for header in headers:
        if header[:4] != b"head":
            raise ValueError("no vhdx header")
        if any(header[48:64]):
            raise ValueError("the vhdx log is in use (LogGuid is set): not a closed file")
    sequence = [struct.unpack_from("<Q", h, 8)[0] for h in headers]
    order = sorted(range(2), key=lambda i: sequence[i])
    file_write = derived_uuid(identity, "vhdx", "file write").bytes_le
    data_write = derived_uuid(identity, "vhdx", "data write").bytes_le
    for rank, index in enumerate(order, 1):
        header = headers[index]
        struct.pack_into("<Q", header, 8, rank)
        header[16:32] = file_write
        header[32:48] = data_write
        struct.pack_into("<I", header, 4, 0)
        struct.pack_into("<I", header, 4, crc32c(bytes(header)))
        _write(fd, HEADERS[index], bytes(header))
    log_length, log_offset = struct.unpack_from("<IQ", headers[0], 68)
    if log_length:  # LogGuid is zero: the log holds nothing a reader may replay
        for start in range(0, log_length, MIB):
            _write(fd, log_offset + start, bytes(min(MIB, log_length - start)))
    metadata = _region(fd, METADATA_REGION)
    table = _read(fd, metadata, 64 * KIB)
    if table[:8] != b"metadata":
        raise ValueError("no vhdx metadata table")
    count = struct.unpack_from("<H", table, 10)[0]
    for entry in range(count):
        item = table[32 + 32 * entry:64 + 32 * entry]
        if uuid.UUID(bytes_le=item[:16]) == PAGE83:
            offset, length = struct.unpack_from("<II", item, 16)
            if length != 16:
                raise ValueError("Page83Data is not 16 bytes")
            _write(fd, metadata + offset, derived_uuid(identity, "vhdx", "page83").bytes_le)
            return
    raise ValueError("no Page83Data metadata item")


def _region(fd: int, guid: uuid.UUID) -> int:
    table = _read(fd, REGION_TABLE, 64 * KIB)
    if table[:4] != b"regi":
        raise ValueError("no vhdx region table")
    count = struct.unpack_from("<I", table, 8)[0]
    for entry in range(count):
        item = table[16 + 32 * entry:48 + 32 * entry]
        if uuid.UUID(bytes_le=item[:16]) == guid:
            offset: int = struct.unpack_from("<Q", item, 16)[0]
            return offset
    raise ValueError(f"no vhdx region {guid}")


# --- vmdk (descriptor text: "CID=xxxxxxxx") ---------------------------------------------------

CID = re.compile(rb"\nCID=([0-9a-fA-F]{1,8})\n")  # qemu writes it without leading zeros
NO_CID = {0xFFFFFFFF, 0xFFFFFFFE}  # "no parent" and "unchanged" in VMware's descriptors


def derived_cid(identity: str) -> str:
    value = derived_uuid(identity, "vmdk", "cid").int & 0xFFFFFFFF
    return f"{value ^ 1 if value in NO_CID else value:08x}"


def _vmdk(fd: int, identity: str) -> None:
    head = _read(fd, 0, 512)
    if head[:4] != b"KDMV":
        raise ValueError("no vmdk sparse extent header")
    offset, size = struct.unpack_from("<QQ", head, 28)
    if not offset or not size:
        raise ValueError("no embedded vmdk descriptor")
    descriptor = _read(fd, offset * 512, size * 512)
    text = descriptor.split(b"\0", 1)[0]
    found = CID.search(text)
    if found is None:
        raise ValueError("no CID in the vmdk descriptor")
    # always 8 digits: the text after the CID moves when qemu wrote fewer (the descriptor
    # area is NUL-padded to its fixed size)
    text = text[:found.start(1)] + derived_cid(identity).encode() + text[found.end(1):]
    if len(text) >= len(descriptor):
        raise ValueError("the vmdk descriptor area is full")
    _write(fd, offset * 512, text.ljust(len(descriptor), b"\0"))


# --- vdi (VirtualBox disk image header 1.1: little-endian) ------------------------------------

VDI_SIGNATURE = 0xBEDA107F
VDI_UUIDS = {"image": 392, "last snapshot": 408}


def _vdi(fd: int, identity: str) -> None:
    head = _read(fd, 0, 512)
    if struct.unpack_from("<I", head, 64)[0] != VDI_SIGNATURE:
        raise ValueError("no vdi signature")
    if any(head[424:456]):
        raise ValueError("a differencing vdi (uuid_link/uuid_parent set)")
    for field, offset in VDI_UUIDS.items():
        _write(fd, offset, derived_uuid(identity, "vdi", field).bytes_le)

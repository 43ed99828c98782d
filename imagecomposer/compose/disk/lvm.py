"""Write an LVM2 physical volume with its volume group's metadata into a plain file.

No ``pvcreate``/``vgcreate``/``lvcreate`` (they need the device as a block device, and
``lvcreate`` needs device-mapper): the on-disk format is documented in lvm2's
``lib/format_text/layout.h``, ``lib/label/label.h`` and ``doc/lvm-disk-reading.txt``, and is
small. What a PV of ours holds, at offsets from its start (all integers little-endian):

* sector 1 (byte 512), the **label**: ``LABELONE``, the label's own sector number (1), a
  CRC of the rest of the sector (from byte 20 on), the offset of the PV header (32) and
  the type ``LVM2 001``;
* right behind it the **PV header**: the PV id (32 characters, no dashes), the device size
  in bytes, the list of data areas (one: offset ``pe_start``, size 0 = "to the end"), a
  (0, 0) terminator, the list of metadata areas (one: offset 4096, size ``pe_start`` -
  4096), a (0, 0) terminator, then the **PV header extension** (version 2, flags 1 =
  "used by a VG") with an empty list of bootloader areas;
* byte 4096, the **metadata area**: its 512-byte header (a CRC of bytes 4..512, the magic
  ``" LVM2 x[5A%r0N*>"``, version 1, the area's absolute start and size, then the raw
  locations: one for the committed metadata, a zero terminator), and the **circular
  buffer** behind it, whose first (and only) record is the volume group's text metadata at
  offset 512 of the area. Its raw location carries its size (the text plus a NUL) and CRC;
* ``pe_start`` (1 MiB), the first extent: logical volume data.

The CRC is lvm2's: the reflected CRC-32 table (polynomial 0xEDB88320) with the initial value
0xF597A6CF and no final inversion (``zlib.crc32`` with the bit-inverted initial value,
inverted again). The text metadata follows lvm2's own export (``pvck --dump metadata`` prints
it): one volume group block (id, ``seqno = 1``, status, ``extent_size`` in sectors, the PV
with ``dev_size``/``pe_start``/``pe_count``, each LV as one ``striped`` segment with
``stripe_count = 1``, i.e. linear), then ``contents``, ``version``, ``creation_host`` and
``creation_time``. The PV's ``device`` hint is left out (it is optional; a wrong one would
only mislead), and ``creation_time`` is the build epoch (``when``; left out when None):
nothing depends on the clock, so the same layout and epoch always give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

from imagecomposer.compose.layout import SECTOR, PlannedVolumeGroup

INITIAL_CRC = 0xF597A6CF
LABEL_ID = b"LABELONE"
LABEL_TYPE = b"LVM2 001"
LABEL_SECTOR = 1
PV_HEADER_OFFSET = 32  # from the start of the label sector
PV_EXT_VERSION = 2
PV_EXT_USED = 0x1
MDA_MAGIC = b" LVM2 x[5A%r0N*>"
MDA_VERSION = 1
MDA_START = 4096  # the first metadata area, right after the label's 4 KiB
MDA_HEADER_SIZE = 512
ID_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # lvm2's, minus !#
ID_LEN = 32
ID_GROUPS = (6, 4, 4, 4, 4, 4, 6)
CREATION_HOST = "imagecomposer"


def crc(data: bytes, initial: int = INITIAL_CRC) -> int:
    """lvm2's ``calc_crc``: CRC-32 (reflected, 0xEDB88320) without the final inversion."""
    return zlib.crc32(data, initial ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def derive_id(seed: str, kind: str, name: str) -> str:
    """An LVM id (``xxxxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxxxx``) from the seed, never random."""
    digest = hashlib.sha256(f"{seed}\0lvm-{kind}\0{name}".encode()).digest()
    chars = "".join(ID_CHARS[b % len(ID_CHARS)] for b in digest[:ID_LEN])
    groups, at = [], 0
    for size in ID_GROUPS:
        groups.append(chars[at:at + size])
        at += size
    return "-".join(groups)


def metadata_text(vg: PlannedVolumeGroup, *, when: int | None = None) -> str:
    """The volume group's text metadata, as lvm2 writes it into the metadata area."""
    sectors = vg.extent_size // SECTOR
    lines = [
        f"{vg.name} {{",
        f'id = "{vg.vgid}"',
        "seqno = 1",
        'format = "lvm2"',
        'status = ["RESIZEABLE", "READ", "WRITE"]',
        "flags = []",
        f"extent_size = {sectors}",
        "max_lv = 0",
        "max_pv = 0",
        "metadata_copies = 0",
        "",
        "physical_volumes {",
        "",
        "pv0 {",
        f'id = "{vg.pvid}"',
        "",
        'status = ["ALLOCATABLE"]',
        "flags = []",
        f"dev_size = {vg.pv_size // SECTOR}",
        f"pe_start = {vg.pe_start // SECTOR}",
        f"pe_count = {vg.pe_count}",
        "}",
        "}",
    ]
    if vg.logical_volumes:
        lines += ["", "logical_volumes {"]
        for lv in vg.logical_volumes:
            lines += ["", f"{lv.name} {{", f'id = "{lv.lvid}"',
                      'status = ["READ", "WRITE", "VISIBLE"]', "flags = []"]
            if when is not None:
                lines += [f"creation_time = {when}", f'creation_host = "{CREATION_HOST}"']
            lines += ["segment_count = 1", "", "segment1 {", "start_extent = 0",
                      f"extent_count = {lv.extent_count}", "", 'type = "striped"',
                      "stripe_count = 1", "", "stripes = [", f'"pv0", {lv.start_extent}',
                      "]", "}", "}"]
        lines.append("}")
    lines += ["", "}", "# Written by imagecomposer", "",
              'contents = "Text Format Volume Group"', "version = 1", "",
              'description = ""', "", f'creation_host = "{CREATION_HOST}"']
    if when is not None:
        lines.append(f"creation_time = {when}")
    return "\n".join(lines) + "\n\n"


def label_sector(vg: PlannedVolumeGroup) -> bytes:
    """Sector 1 of the PV: the label header, the PV header and its extension."""
    areas = struct.pack("<32sQ", vg.pvid.replace("-", "").encode(), vg.pv_size)
    areas += struct.pack("<QQQQ", vg.pe_start, 0, 0, 0)  # data area "to the end", terminator
    areas += struct.pack("<QQQQ", MDA_START, vg.pe_start - MDA_START, 0, 0)  # metadata area
    areas += struct.pack("<IIQQ", PV_EXT_VERSION, PV_EXT_USED, 0, 0)  # no bootloader area
    body = struct.pack("<I8s", PV_HEADER_OFFSET, LABEL_TYPE) + areas
    body = body.ljust(SECTOR - 20, b"\0")
    return LABEL_ID + struct.pack("<QI", LABEL_SECTOR, crc(body)) + body


def mda_header(vg: PlannedVolumeGroup, text: bytes) -> bytes:
    """The metadata area header pointing at ``text`` (NUL included) at offset 512 of the
    area. Its ``start`` is the area's byte offset on the PV's own device (lvm2 checks it)."""
    size = vg.pe_start - MDA_START
    body = MDA_MAGIC + struct.pack("<IQQ", MDA_VERSION, MDA_START, size)
    body += struct.pack("<QQII", MDA_HEADER_SIZE, len(text), crc(text), 0)
    body += struct.pack("<QQII", 0, 0, 0, 0)  # end of the raw locations
    body = body.ljust(MDA_HEADER_SIZE - 4, b"\0")
    return struct.pack("<I", crc(body)) + body


def physical_volume(vg: PlannedVolumeGroup, *, when: int | None = None) -> bytes:
    """The first ``pe_start`` bytes of the PV, from byte 0 (sector 0 stays zero)."""
    text = metadata_text(vg, when=when).encode() + b"\0"
    if MDA_HEADER_SIZE + len(text) > vg.pe_start - MDA_START:
        raise ValueError(f"the metadata of volume group {vg.name} does not fit its area")
    head = bytearray(vg.pe_start)
    label = label_sector(vg)
    head[LABEL_SECTOR * SECTOR:LABEL_SECTOR * SECTOR + len(label)] = label
    header = mda_header(vg, text)
    head[MDA_START:MDA_START + len(header)] = header
    start = MDA_START + MDA_HEADER_SIZE
    head[start:start + len(text)] = text
    return bytes(head)


def write_physical_volume(target: Path, offset: int, vg: PlannedVolumeGroup, *,
                          when: int | None = None) -> None:
    """Write ``vg``'s PV label and metadata into ``target`` at byte ``offset`` (only the
    sectors holding data are written, so a sparse target stays sparse)."""
    head = physical_volume(vg, when=when)
    fd = os.open(target, os.O_WRONLY)
    try:
        for start, end in ((0, MDA_START), (MDA_START, vg.pe_start)):
            chunk = head[start:end].rstrip(b"\0")
            if chunk:
                os.pwrite(fd, chunk, offset + start)
    finally:
        os.close(fd)

"""Write the partition table into the plain disk file with sfdisk (no device needed).

sfdisk reads a script (label, label-id, one line per partition with start, size, type,
uuid and name), so the whole table, including the GPT disk GUID and every partition UUID,
comes from the planned :class:`Layout` and is reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imagecomposer.compose.layout import SECTOR, Layout, PlannedPartition
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import DiskToolError


def sfdisk_script(layout: Layout) -> str:
    """The sfdisk input that creates ``layout``'s table."""
    if layout.table == "gpt":
        lines = ["label: gpt", f"label-id: {layout.disk_id.upper()}"]
    else:
        lines = ["label: dos", f"label-id: {layout.disk_id}"]
    lines += ["unit: sectors", "sector-size: 512", ""]
    boot = _mbr_boot_partition(layout)
    for part in layout.partitions:
        fields = [f"start={part.start // SECTOR}", f"size={part.size // SECTOR}",
                  f"type={part.type_guid}"]
        if layout.table == "gpt":
            name = (part.label or part.name).replace('"', "").replace("\\", "")
            fields += [f"uuid={part.partuuid.upper()}", f'name="{name}"']
        elif part is boot:
            fields.append("bootable")
        lines.append(", ".join(fields))
    return "\n".join(lines) + "\n"


def _mbr_boot_partition(layout: Layout) -> PlannedPartition | None:
    """The partition BIOSes see as active: the one holding /boot, else the root."""
    if layout.table != "mbr":
        return None
    for part in layout.partitions:
        if part.mountpoint == "/boot":
            return part
    return next((p for p in layout.partitions if p.mountpoint == "/" or p.type == "root"), None)


def write_table(layout: Layout, disk: Path) -> None:
    """Write ``layout``'s partition table into ``disk`` (a regular file of the right size)."""
    runner.require("sfdisk", "fdisk")
    runner.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "--wipe", "always",
                disk], input=sfdisk_script(layout).encode(), error=DiskToolError,
               what="sfdisk")


def read_table(disk: Path) -> dict[str, Any]:
    """The partition table of ``disk`` as ``sfdisk --json`` reports it."""
    done = runner.run(["sfdisk", "--json", disk], capture=True, error=DiskToolError)
    table: dict[str, Any] = json.loads(done.stdout)["partitiontable"]
    return table


MBR_CODE_SIZE = 440  # boot code area before the disk signature and the partition entries


def write_boot_code(disk: Path, code: bytes) -> None:
    """Write BIOS boot code (syslinux's mbr.bin, GRUB's boot.img) into the MBR, leaving the
    disk signature and the partition table behind it untouched."""
    if len(code) > MBR_CODE_SIZE:
        code = code[:MBR_CODE_SIZE]  # boot.img is 512 bytes; only its code part is ours
    with disk.open("r+b") as handle:
        handle.write(code)

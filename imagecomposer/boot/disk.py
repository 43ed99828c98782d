"""What QEMU is given to boot: any output format, compressed or not.

Every format the exporter writes boots (raw, qcow2, vhd/vhd-fixed, vhdx, vmdk and
vmdk-stream, vdi): the format is what ``qemu-img info`` reads in the file (a fixed VHD, which
it takes for raw, by its ``conectix`` footer), and becomes the ``-drive format=`` value
(``vpc`` for VHD). A compressed output (``.gz``, ``.xz``, ``.zst``,
recognised by its magic bytes) is decompressed into the boot's temporary directory first;
the image itself is never changed (QEMU attaches it with ``snapshot=on``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import attrs

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import BootError, BootToolError, CommandError

log = logging.getLogger(__name__)

MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
QEMU_FORMATS = ("raw", "qcow2", "vpc", "vhdx", "vmdk", "vdi")


@attrs.frozen
class BootDisk:
    path: Path  # what QEMU opens (the image, or its decompressed copy)
    format: str  # the -drive format= value
    compression: str = "none"  # of the image as given


def compression_of(image: Path) -> str:
    """``gzip``, ``xz``, ``zstd`` or ``none``, from the file's first bytes."""
    with image.open("rb") as f:
        head = f.read(8)
    return next((name for magic, name in MAGIC if head.startswith(magic)), "none")


def decompress(image: Path, compression: str, out: Path) -> Path:
    """Write the decompressed ``image`` to ``out`` (sparse where the tool allows)."""
    if compression == "zstd":
        argv = [runner.require("zstd", "zstd"), "-d", "-q", "-f", "--sparse", "-o", str(out),
                str(image)]
    else:
        tool = runner.require("xz", "xz-utils") if compression == "xz" else (
            runner.which("pigz") or runner.require("gzip", "gzip"))
        argv = ["sh", "-c", '"$0" -d -c -- "$1" > "$2"', tool, str(image), str(out)]
    runner.run(argv, error=BootToolError, what=f"decompressing {image.name} ({compression})")
    return out


def disk_format(path: Path) -> str:
    """The format ``qemu-img info`` finds in ``path`` (a -drive format= value)."""
    qemu_img = runner.require("qemu-img", "qemu-utils")
    try:
        done = runner.run([qemu_img, "info", "--output=json", str(path)], capture=True,
                          error=BootToolError, what=f"qemu-img info {path.name}")
        found = str(json.loads(done.stdout)["format"])
    except (CommandError, ValueError, KeyError) as exc:
        raise BootError(f"cannot read the disk format of {path}: {exc}") from None
    if found == "raw" and _vhd_footer(path):
        found = "vpc"  # a fixed VHD is raw data and a footer: QEMU's probe says raw
    if found not in QEMU_FORMATS:
        raise BootError(f"{path}: format '{found}' is not a disk image format imagecomposer "
                        f"boots ({', '.join(QEMU_FORMATS)})")
    return found


def _vhd_footer(path: Path) -> bool:
    with path.open("rb") as f:
        size = f.seek(0, 2)
        if size < 512:
            return False
        f.seek(size - 512)
        return f.read(8) == b"conectix"


def prepare(image: Path, scratch: Path) -> BootDisk:
    """The disk to attach for ``image``: decompressed into ``scratch`` when compressed."""
    compression = compression_of(image)
    path = image
    if compression != "none":
        stem = image.name.rsplit(".", 1)[0] if "." in image.name else image.name
        path = decompress(image, compression, scratch / stem)
    fmt = disk_format(path)
    log.debug("booting %s as %s%s", path, fmt,
              f" (decompressed from {compression})" if compression != "none" else "")
    return BootDisk(path.absolute(), fmt, compression)

"""The bytes of a disk image, whatever its container: a raw file region the readers use.

Raw images are read where they are. A fixed VHD is raw data followed by a 512-byte footer,
so it is read in place too. qcow2, dynamic VHD, VHDX, VMDK and VDI are converted once with
``qemu-img convert -O raw`` into a sparse temporary file (measured faster than ``qemu-img
dd`` of the partitions: docs/inspect.md). gzip, xz and zstd outputs are decompressed into a
sparse temporary file first (``dd conv=sparse`` keeps the holes), then looked at again.

The format is told by the file's own magic bytes, never by its name.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import attrs

from imagecomposer.compose.disk.sparse import data_extents
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import InspectToolError, TruncatedImage, UnsupportedImage
from imagecomposer.inspect.fsbase import first_unequal

# magic bytes at offset 0 -> format name (qemu-img's name in parentheses where it differs)
_MAGIC = ((b"QFI\xfb", "qcow2"), (b"vhdxfile", "vhdx"), (b"KDMV", "vmdk"),
          (b"# Disk DescriptorFile", "vmdk"), (b"conectix", "vhd"))
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
_QEMU_NAMES = {"qcow2": "qcow2", "vhdx": "vhdx", "vmdk": "vmdk", "vhd": "vpc", "vdi": "vdi"}
_DECOMPRESS = {"gzip": "gzip -dc", "xz": "xz -dc", "zstd": "zstd -dcq"}
_TOOLS = {"gzip": ("gzip", "gzip"), "xz": ("xz", "xz-utils"), "zstd": ("zstd", "zstd")}
VDI_MAGIC = 0xBEDA107F
VHD_FIXED = 2


@attrs.frozen
class DiskSource:
    """Where the disk's bytes are: ``size`` bytes of ``path`` from ``offset``."""

    path: Path  # a raw file: the image itself, or a temporary conversion of it
    offset: int
    size: int
    format: str  # raw, qcow2, vhd, vhd-fixed, vhdx, vmdk, vdi
    compression: str  # none, gzip, xz, zstd
    converted: bool  # path is a temporary raw copy


def sniff(path: Path) -> tuple[str, str]:
    """(format, compression) of ``path`` from its magic bytes; compression first."""
    head, tail = _ends(path)
    for magic, name in _COMPRESSED:
        if head.startswith(magic):
            return "compressed", name
    return _container(head, tail), "none"


def _ends(path: Path) -> tuple[bytes, bytes]:
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
            size = os.fstat(handle.fileno()).st_size
            tail = b""
            if size >= 1024:
                handle.seek(size - 512)
                tail = handle.read(512)
    except IsADirectoryError:
        raise UnsupportedImage(f"{path} is a directory, not an image file") from None
    except OSError as exc:
        raise UnsupportedImage(f"cannot read {path}: {exc.strerror}") from None
    return head, tail


def _container(head: bytes, tail: bytes) -> str:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 0x44 and struct.unpack_from("<I", head, 0x40)[0] == VDI_MAGIC:
        return "vdi"
    if tail.startswith(b"conectix"):
        kind = struct.unpack_from(">I", tail, 0x3C)[0]
        return "vhd-fixed" if kind == VHD_FIXED else "vhd"
    return "raw"


def open_source(path: Path, scratch: Path) -> DiskSource:
    """The raw bytes of the image at ``path``; temporary files go into ``scratch``."""
    if not path.exists():
        raise UnsupportedImage(f"no such image: {path}")
    fmt, compression = sniff(path)
    if compression != "none":
        plain = scratch / "decompressed.img"
        _decompress(path, compression, plain)
        fmt, inner = sniff(plain)
        if inner != "none":
            raise UnsupportedImage(f"{path} is compressed twice ({compression}, then {inner})")
        source = _from_container(plain, fmt, scratch)
        return attrs.evolve(source, compression=compression, converted=True)
    return _from_container(path, fmt, scratch)


def _from_container(path: Path, fmt: str, scratch: Path) -> DiskSource:
    size = path.stat().st_size
    if fmt == "raw":
        return DiskSource(path, 0, size, "raw", "none", converted=False)
    if fmt == "vhd-fixed":
        return DiskSource(path, 0, size - 512, "vhd-fixed", "none", converted=False)
    raw = scratch / "converted.raw"
    runner.require("qemu-img", "qemu-utils")
    _check_container(path, fmt)
    done = runner.run(["qemu-img", "convert", "-f", _QEMU_NAMES[fmt], "-O", "raw", path, raw],
                      capture=True, check=False, what=f"qemu-img convert ({fmt})")
    if done.returncode != 0:
        raw.unlink(missing_ok=True)
        text = done.output_tail
        if any(w in text.lower() for w in ("end of file", "truncated", "beyond", "short read")):
            raise TruncatedImage(f"Truncated image: {path} ({fmt}) ends before its data: "
                                 f"{_last(text)}")
        raise UnsupportedImage(f"cannot read {path} as {fmt}: {_last(text)}")
    return DiskSource(raw, 0, raw.stat().st_size, fmt, "none", converted=True)


def _check_container(path: Path, fmt: str) -> None:
    """``qemu-img convert`` reads a truncated qcow2 as zeros without a word: check first
    (``qemu-img check`` reads only metadata: ~25 ms for the 2 GiB example)."""
    if fmt == "vhd":
        _head, tail = _ends(path)
        if not tail.startswith(b"conectix"):  # a dynamic VHD ends with its footer
            raise TruncatedImage(f"Truncated image: {path} (vhd) lacks the footer it must end "
                                 "with")
        return
    if fmt not in ("qcow2", "vhdx", "vmdk", "vdi"):
        return
    done = runner.run(["qemu-img", "check", "-f", _QEMU_NAMES[fmt], path], capture=True,
                      check=False, what=f"qemu-img check ({fmt})")
    if done.returncode in (0, 3):  # 3: leaked clusters only, harmless for reading
        return
    text = (done.stdout.decode("utf-8", "replace") + "\n" + done.output_tail)
    if "end of the file" in text or "beyond" in text or "truncated" in text.lower():
        raise TruncatedImage(f"Truncated image: {path} ({fmt}) ends before the data its "
                             "tables point to")
    raise UnsupportedImage(f"the {fmt} container of {path} is damaged: "
                           f"{_last(done.output_tail or text)}")


def _decompress(path: Path, compression: str, target: Path) -> None:
    tool, package = _TOOLS[compression]
    runner.require(tool, package)
    done = runner.run(["bash", "-o", "pipefail", "-c",
                       f'{_DECOMPRESS[compression]} -- "$1" | dd of="$2" bs=1M conv=sparse '
                       'status=none', "decompress", path, target],
                      capture=True, check=False, what=f"{tool} -d")
    if done.returncode != 0:
        target.unlink(missing_ok=True)
        text = done.output_tail.lower()
        if any(w in text for w in ("unexpected end", "truncated", "premature", "unexpected eof")):
            raise TruncatedImage(f"Truncated image: the {compression} stream of {path} ends "
                                 "early")
        raise InspectToolError(f"cannot decompress {path} ({compression}): "
                               f"{_last(done.output_tail)}", done.argv, done.returncode)


def _last(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def same_bytes(a: DiskSource, b: DiskSource) -> bool:
    """Whether two disks hold the same bytes: regions that are holes in both are equal
    without reading; the rest is compared chunk by chunk, stopping at the first difference
    (each disk is read at most once)."""
    return a.size == b.size and first_difference(a, b) is None


def first_difference(a: DiskSource, b: DiskSource, start: int = 0,
                     length: int | None = None) -> int | None:
    """The offset (from the start of the disks) of the first byte that differs between
    ``length`` bytes of both disks from ``start`` (default: to the end of the shorter one);
    None when they are equal. Regions that are holes in both are equal without being read;
    the rest is compared chunk by chunk, stopping at the first difference."""
    stop = min(a.size, b.size) if length is None else start + length
    if stop > min(a.size, b.size):
        return min(a.size, b.size)  # one disk ends first: its end is the first difference
    fd_a, fd_b = os.open(a.path, os.O_RDONLY), os.open(b.path, os.O_RDONLY)
    try:
        regions = sorted([(s - a.offset, e - a.offset)
                          for s, e in data_extents(fd_a, a.offset + stop, a.offset + start)]
                         + [(s - b.offset, e - b.offset)
                            for s, e in data_extents(fd_b, b.offset + stop, b.offset + start)])
        merged: list[list[int]] = []
        for begin, end in regions:
            if merged and begin <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([begin, end])
        for begin, end in merged:
            while begin < end:
                step = min(end - begin, 8 << 20)
                left = os.pread(fd_a, step, a.offset + begin)
                right = os.pread(fd_b, step, b.offset + begin)
                if left != right:
                    return begin + first_unequal(left, right)
                begin += step
    finally:
        os.close(fd_a)
        os.close(fd_b)
    return None


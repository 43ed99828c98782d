"""Read files out of a finished disk image without mounting it.

In-image checks (tests, the boot test's offline checks) use the filesystem tools' own
readers on ``disk.raw`` at the partition's offset: ``debugfs 'disk.raw?offset=N'`` for
ext4, ``mcopy -i disk.raw@@N`` for FAT, ``unsquashfs -cat`` on an extracted squashfs.
Nothing here needs root, a loop device or a kernel driver.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import attrs

from imagecomposer.compose.disk.sparse import copy_out
from imagecomposer.compose.disk.table import read_table
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import ComposeError, DiskToolError, NotInImage

SECTOR = 512

__all__ = ["FileInfo", "FoundPartition", "NotInImage", "extract_partition", "file_info",
           "find_partition", "list_dir", "read_file"]


@attrs.frozen
class FoundPartition:
    number: int
    name: str
    start: int  # bytes
    size: int  # bytes
    filesystem: str  # as blkid names it: ext4, vfat, xfs, swap, squashfs, erofs, "" if none


@attrs.frozen
class FileInfo:
    mode: int  # permission bits and file type, as st_mode
    uid: int
    gid: int
    size: int


def find_partition(image: Path, partition: int | str) -> FoundPartition:
    """The partition by 1-based number or GPT name (label), with its filesystem type."""
    table = read_table(image)
    entries = table.get("partitions", [])
    for number, entry in enumerate(entries, start=1):
        if partition in (number, entry.get("name")):
            start = int(entry["start"]) * SECTOR
            found = runner.run(["blkid", "-p", "-o", "value", "-s", "TYPE", "-O", str(start),
                                image], capture=True, check=False)
            return FoundPartition(number=number, name=str(entry.get("name", "")), start=start,
                                  size=int(entry["size"]) * SECTOR,
                                  filesystem=found.stdout.decode().strip())
    raise NotInImage(f"no partition {partition!r} in {image}")


def read_file(image: Path, partition: int | str, path: str) -> bytes:
    """The content of ``path`` (absolute, inside the partition) in ``image``."""
    part = find_partition(image, partition)
    if part.filesystem == "ext4":
        done = runner.run(["debugfs", "-R", f"cat {_quote(path)}", f"{image}?offset={part.start}"],
                          capture=True, error=DiskToolError)
        if not done.stdout and _missing(image, part, path):
            raise NotInImage(f"{path} is not in partition {partition!r} of {image}")
        return done.stdout
    if part.filesystem == "vfat":
        done = runner.run(["mcopy", "-n", "-i", f"{image}@@{part.start}", f"::{path}", "-"],
                          capture=True, check=False, env={"MTOOLS_SKIP_CHECK": "1"})
        if done.returncode != 0:
            raise NotInImage(f"{path} is not in partition {partition!r} of {image}: "
                             + done.output_tail)
        return done.stdout
    if part.filesystem == "squashfs":
        with tempfile.TemporaryDirectory() as tmp:
            piece = Path(tmp) / "part.img"
            _extract(image, part, piece)
            done = runner.run(["unsquashfs", "-cat", piece, path.lstrip("/")], capture=True,
                              check=False)
            if done.returncode != 0:
                raise NotInImage(f"{path} is not in partition {partition!r} of {image}")
            return done.stdout
    raise ComposeError(f"reading files from {part.filesystem or 'unformatted'} partitions is "
                       "not supported")


def list_dir(image: Path, partition: int | str, path: str = "/") -> list[str]:
    """Names in directory ``path`` (without . and ..)."""
    part = find_partition(image, partition)
    if part.filesystem == "ext4":
        done = runner.run(["debugfs", "-R", f"ls -p {_quote(path)}",
                           f"{image}?offset={part.start}"], capture=True, error=DiskToolError)
        names = [line.split("/")[5] for line in done.stdout.decode().splitlines()
                 if line.count("/") >= 6]
    elif part.filesystem == "vfat":
        done = runner.run(["mdir", "-b", "-i", f"{image}@@{part.start}", f"::{path}"],
                          capture=True, error=DiskToolError, env={"MTOOLS_SKIP_CHECK": "1"})
        names = [line.rstrip("/").rsplit("/", 1)[-1] for line in done.stdout.decode().splitlines()
                 if line.strip()]
    else:
        raise ComposeError(f"listing {part.filesystem} partitions is not supported")
    return [n for n in names if n not in (".", "..")]


def file_info(image: Path, partition: int | str, path: str) -> FileInfo:
    """Mode, owner and size of ``path`` in an ext4 partition (``debugfs stat``)."""
    part = find_partition(image, partition)
    if part.filesystem != "ext4":
        raise ComposeError("file_info reads ext4 partitions only (FAT has no owners)")
    done = runner.run(["debugfs", "-R", f"stat {_quote(path)}", f"{image}?offset={part.start}"],
                      capture=True, error=DiskToolError)
    text = done.stdout.decode()
    kind = re.search(r"Type:\s*(\w+)", text)
    mode = re.search(r"Mode:\s*(\d+)", text)
    owner = re.search(r"User:\s*(\d+)\s+Group:\s*(\d+)", text)
    size = re.search(r"Size:\s*(\d+)", text)
    if not (kind and mode and owner and size):
        raise NotInImage(f"{path} is not in partition {partition!r} of {image}")
    types = {"regular": 0o100000, "directory": 0o040000, "symlink": 0o120000,
             "FIFO": 0o010000, "character": 0o020000, "block": 0o060000, "socket": 0o140000}
    return FileInfo(mode=types.get(kind.group(1), 0) | int(mode.group(1), 8),
                    uid=int(owner.group(1)), gid=int(owner.group(2)), size=int(size.group(1)))


def extract_partition(image: Path, partition: int | str, target: Path) -> FoundPartition:
    """Copy one partition out of ``image`` into the file ``target`` (sparsely)."""
    part = find_partition(image, partition)
    _extract(image, part, target)
    return part


def _extract(image: Path, part: FoundPartition, target: Path) -> None:
    copy_out(image, part.start, part.size, target)


def _missing(image: Path, part: FoundPartition, path: str) -> bool:
    done = runner.run(["debugfs", "-R", f"stat {_quote(path)}", f"{image}?offset={part.start}"],
                      capture=True, check=False)
    return b"Inode:" not in done.stdout


def _quote(path: str) -> str:
    return '"' + path.replace('"', '\\"') + '"'

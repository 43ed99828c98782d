"""Copy a filesystem image into the disk file at an offset, keeping holes as holes.

Images from mkfs are mostly holes; copying only their data extents (``SEEK_DATA`` /
``SEEK_HOLE``) with ``copy_file_range`` keeps the disk file sparse and lets the kernel
copy (or reflink) without the data passing through Python.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def copy_into(image: Path, disk: Path, offset: int) -> int:
    """Copy ``image`` into ``disk`` at byte ``offset``; return the bytes of data copied."""
    copied = 0
    src = os.open(image, os.O_RDONLY)
    try:
        dst = os.open(disk, os.O_WRONLY)
        try:
            size = os.fstat(src).st_size
            for start, end in data_extents(src, size):
                copied += _copy_range(src, dst, start, end - start, offset + start)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return copied


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """The (start, end) byte ranges of ``fd`` that hold data."""
    extents: list[tuple[int, int]] = []
    position = 0
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        extents.append((start, min(end, size)))
        position = end
    return extents


def _copy_range(src: int, dst: int, start: int, length: int, target: int) -> int:
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(src, dst, length - done, start + done, target + done)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            n = _copy_plain(src, dst, start + done, length - done, target + done)
        if n == 0:
            break
        done += n
    return done


def _copy_plain(src: int, dst: int, start: int, length: int, target: int) -> int:
    chunk = os.pread(src, min(length, 8 << 20), start)
    return os.pwrite(dst, chunk, target)

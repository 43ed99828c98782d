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


def copy_out(disk: Path, start: int, size: int, target: Path) -> int:
    """Copy ``size`` bytes of ``disk`` from byte ``start`` into the new file ``target``,
    keeping holes as holes (the reverse of :func:`copy_into`: a partition out of a disk)."""
    copied = 0
    src = os.open(disk, os.O_RDONLY)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(dst, size)
            for begin, end in data_extents(src, start + size, start):
                copied += _copy_range(src, dst, begin, end - begin, begin - start)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return copied


def data_extents(fd: int, size: int, position: int = 0) -> list[tuple[int, int]]:
    """The (start, end) byte ranges of ``fd`` that hold data, from ``position`` to ``size``."""
    extents: list[tuple[int, int]] = []
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                break
            raise
        if start >= size:
            break
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

"""File digests for the caches: SHA256 of whole files, in parallel, and of sparse images.

Hashing releases the GIL (hashlib does for large buffers), so a few threads hash several
files at once; more threads than CPUs only add contention.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

BLOCK = 1 << 20
_ZERO = bytes(BLOCK)
_SPARSE_TAG = b"imagecomposer sparse-sha256 v1\0"


PROGRESS_EVERY = 64 * BLOCK  # bytes between two progress reports of one file


def sha256_file(path: Path, progress: Callable[[int, int], None] | None = None) -> str:
    """The SHA256 of ``path`` (hex); ``OSError`` if it cannot be read. ``progress(done,
    total)`` is called every :data:`PROGRESS_EVERY` bytes and at the end."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        total = os.fstat(f.fileno()).st_size if progress is not None else 0
        done = reported = 0
        while block := f.read(BLOCK):
            digest.update(block)
            done += len(block)
            if progress is not None and done - reported >= PROGRESS_EVERY:
                progress(done, total)
                reported = done
        if progress is not None:
            progress(done, max(total, done))
    return digest.hexdigest()


def workers(parallel: int) -> int:
    """Hashing threads worth running: ``parallel`` capped at the number of CPUs."""
    return max(1, min(parallel, os.cpu_count() or 1))


def sha256_files(paths: Sequence[Path], parallel: int = 8, *,
                 digest: Callable[[Path], str] = sha256_file) -> dict[Path, str | None]:
    """``{path: digest(path)}`` for every path (default: SHA256), ``None`` for one that
    cannot be read; up to ``parallel`` threads (capped at the CPUs)."""

    def one(path: Path) -> str | None:
        try:
            return digest(path)
        except OSError:
            return None

    count = workers(parallel)
    if count == 1 or len(paths) < 2:
        return {path: one(path) for path in paths}
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="sha256") as pool:
        return dict(zip(paths, pool.map(one, paths), strict=True))


def _data_ranges(fd: int, size: int) -> Iterable[tuple[int, int]]:
    """(start, end) of the regions of ``fd`` that may hold data, block-aligned, in order.

    Holes (``SEEK_HOLE``) are skipped without reading them; a filesystem without hole
    support reports the whole file as data, which only costs time.
    """
    offset = 0
    while offset < size:
        try:
            data = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole from offset to the end
                return
            raise
        try:
            hole = os.lseek(fd, data, os.SEEK_HOLE)
        except OSError:
            hole = size
        start = max(offset, data - data % BLOCK)
        end = min(size, -(-hole // BLOCK) * BLOCK)
        yield start, end
        offset = end


def sparse_sha256(path: Path) -> str:
    """A SHA256 over the content of ``path`` that reads only its data, not its holes.

    The file is cut into 1 MiB blocks; the digest covers the size, then the index and bytes
    of every block that is not all zeros. Two files have the same digest exactly when they
    have the same size and bytes (the encoding is unambiguous), whatever their hole layout:
    a 2 GiB disk image holding 64 MiB of data is verified by reading 64 MiB.
    """
    with path.open("rb") as f:
        return sparse_sha256_of(f)


def sparse_sha256_of(f: BinaryIO) -> str:
    """:func:`sparse_sha256` of the open file ``f`` (read from its start): what was hashed
    is exactly the inode ``f`` holds, whatever the name points to meanwhile."""
    digest = hashlib.sha256(_SPARSE_TAG)
    fd = f.fileno()
    size = os.fstat(fd).st_size
    digest.update(struct.pack(">Q", size))
    for start, end in _data_ranges(fd, size):
        f.seek(start)
        pos = start
        while pos < end:
            block = f.read(min(BLOCK, size - pos))
            if not block:
                break
            if block != (_ZERO if len(block) == BLOCK else bytes(len(block))):
                digest.update(struct.pack(">Q", pos // BLOCK))
                digest.update(block)
            pos += len(block)
    return digest.hexdigest()


def hash_file_into(path: Path, digest: hashlib._Hash) -> None:
    """Feed the content of ``path`` to ``digest``."""
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)

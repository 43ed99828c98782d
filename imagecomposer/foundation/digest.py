"""File digests for the caches: SHA256 of whole files, in parallel, and of sparse images.

Hashing releases the GIL (hashlib does for large buffers), so a few threads hash several
files at once; more threads than CPUs only add contention.

:func:`sha256_file` reads only the data of a sparse file (its holes are fed to the digest
as zeros from memory, never read from the kernel) and remembers, for this process, the
digest of the inode it hashed (by device, inode, size, mtime and ctime: any write changes
one of them). :func:`sha256_known` answers from that memory: a build hashes its 2 GiB raw
image once, not once for the SBOMs, once for the exporter's identity, once for
``SHA256SUMS`` and once more for the image cache. Checks against a stored digest (the
caches' seals) always read the file again: they call :func:`sha256_file`.

With ``content=True`` the same pass also makes the file's :func:`sparse_sha256` (the image
cache's content digest) and remembers it too: :func:`content_known` answers from that, so
the image cache stores a build's outputs without reading them once more.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

BLOCK = 1 << 20
_ZERO = bytes(BLOCK)
_SPARSE_TAG = b"imagecomposer sparse-sha256 v1\0"


PROGRESS_EVERY = 64 * BLOCK  # bytes between two progress reports of one file
KNOWN_MAX = 256  # digests remembered by sha256_known (least recently used out)

Identity = tuple[int, int, int, int, int]
_known: OrderedDict[Identity, str] = OrderedDict()
_content: OrderedDict[Identity, str] = OrderedDict()  # sparse_sha256, same identities
_known_lock = threading.Lock()


def identity(st: os.stat_result) -> Identity:
    """What changes whenever the file's content may have: device, inode, size, mtime and
    ctime (a write sets both times; restoring an mtime still moves the ctime)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def remember(path: Path, digest: str, content: str | None = None) -> None:
    """Record ``digest`` as the SHA256 of the file ``path`` is now (the caller made it from
    bytes whose digest it knows: a copy, or a file it hashed while writing it), and
    ``content`` as its :func:`sparse_sha256` when given."""
    _record(identity(path.stat()), digest, content)


def _record(key: Identity, digest: str | None, content: str | None) -> None:
    with _known_lock:
        for known, value in ((_known, digest), (_content, content)):
            if value is not None:
                known[key] = value
                known.move_to_end(key)
                while len(known) > KNOWN_MAX:
                    known.popitem(last=False)


def recall(path: Path) -> str | None:
    """The SHA256 this process knows for the file ``path`` as it is now, or None."""
    return _recall(_known, path)


def recall_content(path: Path) -> str | None:
    """The :func:`sparse_sha256` this process knows for the file ``path`` as it is now."""
    return _recall(_content, path)


def _recall(known: OrderedDict[Identity, str], path: Path) -> str | None:
    key = identity(path.stat())
    with _known_lock:
        found = known.get(key)
        if found is not None:
            known.move_to_end(key)
    return found


def sha256_known(path: Path, progress: Callable[[int, int], None] | None = None, *,
                 content: bool = False) -> str:
    """The SHA256 of ``path``: :func:`recall` when this process hashed (or remembered) this
    very inode unchanged, else :func:`sha256_file` (``content``: its content digest made
    in the same pass)."""
    found = recall(path)
    return found if found is not None else sha256_file(path, progress, content=content)


def content_known(path: Path) -> str:
    """The :func:`sparse_sha256` of ``path``: :func:`recall_content` when this process
    hashed (or remembered) this very inode unchanged, else read and remembered."""
    found = recall_content(path)
    if found is not None:
        return found
    with path.open("rb") as f:
        before = os.fstat(f.fileno())
        found = sparse_sha256_of(f)
        if identity(os.fstat(f.fileno())) == identity(before):
            _record(identity(before), None, found)
    return found


def sha256_file(path: Path, progress: Callable[[int, int], None] | None = None, *,
                content: bool = False) -> str:
    """The SHA256 of ``path`` (hex); ``OSError`` if it cannot be read. ``progress(done,
    total)`` is called every :data:`PROGRESS_EVERY` bytes and at the end. Holes are hashed
    as the zeros they read as, without reading them; the digest is remembered for
    :func:`sha256_known` when the file did not change while it was read. ``content``: its
    :func:`sparse_sha256` is made from the same reads and remembered for
    :func:`content_known` (the data is hashed twice, but read once)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        fd = f.fileno()
        before = os.fstat(fd)
        total = before.st_size
        sparse = _Sparse(total) if content else None
        done = reported = 0
        for start, end in [*_data_ranges(fd, total), (total, total)]:
            while done < start:  # a hole: zeros, from memory
                step = min(BLOCK, start - done)
                digest.update(_ZERO if step == BLOCK else memoryview(_ZERO)[:step])
                done += step
                if progress is not None and done - reported >= PROGRESS_EVERY:
                    progress(done, total)
                    reported = done
            f.seek(done)
            while done < end and (block := f.read(min(BLOCK, end - done))):
                digest.update(block)
                if sparse is not None:
                    sparse.update(done, block)
                done += len(block)
                if progress is not None and done - reported >= PROGRESS_EVERY:
                    progress(done, total)
                    reported = done
        while block := f.read(BLOCK):  # grown while being read: the digest is of what was read
            digest.update(block)
            done += len(block)
        if progress is not None:
            progress(done, max(total, done))
        after = os.fstat(fd)
    hexdigest = digest.hexdigest()
    if identity(after) == identity(before) and done == total:
        _record(identity(after), hexdigest, sparse.hexdigest() if sparse is not None else None)
    return hexdigest


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
    fd = f.fileno()
    size = os.fstat(fd).st_size
    digest = _Sparse(size)
    for start, end in _data_ranges(fd, size):
        f.seek(start)
        pos = start
        while pos < end:
            block = f.read(min(BLOCK, size - pos))
            if not block:
                break
            digest.update(pos, block)
            pos += len(block)
    return digest.hexdigest()


class _Sparse:
    """The :func:`sparse_sha256` encoding: the size, then the index and bytes of every
    1 MiB block that is not all zeros (blocks fed at multiples of :data:`BLOCK`)."""

    def __init__(self, size: int) -> None:
        self.digest = hashlib.sha256(_SPARSE_TAG)
        self.digest.update(struct.pack(">Q", size))

    def update(self, offset: int, block: bytes) -> None:
        if block != (_ZERO if len(block) == BLOCK else bytes(len(block))):
            self.digest.update(struct.pack(">Q", offset // BLOCK))
            self.digest.update(block)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def hash_file_into(path: Path, digest: hashlib._Hash) -> None:
    """Feed the content of ``path`` to ``digest``."""
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)

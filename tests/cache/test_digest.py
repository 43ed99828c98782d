"""The digests the caches check: whole-file SHA256 in parallel, and sparse-aware SHA256."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from imagecomposer.export.exporter import Exporter
from imagecomposer.foundation.digest import (
    BLOCK,
    content_known,
    recall,
    recall_content,
    remember,
    sha256_file,
    sha256_files,
    sha256_known,
    sparse_sha256,
)


def write(path: Path, size: int, chunks: dict[int, bytes], *, dense: bool = False) -> Path:
    with path.open("wb") as f:
        if dense:
            f.write(bytes(size))
        else:
            f.truncate(size)
        for offset, data in chunks.items():
            f.seek(offset)
            f.write(data)
    return path


def test_sparse_digest_is_the_content_not_the_hole_layout(tmp_path: Path) -> None:
    size = 8 * BLOCK + 123  # a short last block
    chunks = {3 * BLOCK + 7: b"data", size - 5: b"tail!"}
    sparse = write(tmp_path / "sparse", size, chunks)
    dense = write(tmp_path / "dense", size, chunks, dense=True)  # zeros written out
    assert sparse.stat().st_blocks < dense.stat().st_blocks
    assert sparse_sha256(sparse) == sparse_sha256(dense)
    one_byte = write(tmp_path / "changed", size, {**chunks, 3 * BLOCK + 7: b"Data"})
    in_a_hole = write(tmp_path / "hole", size, {**chunks, 6 * BLOCK: b"\x01"})
    longer = write(tmp_path / "longer", size + 1, chunks)  # one more zero byte
    digests = {sparse_sha256(p) for p in (sparse, one_byte, in_a_hole, longer)}
    assert len(digests) == 4
    empty = write(tmp_path / "empty", 0, {})
    assert sparse_sha256(empty) != sparse_sha256(write(tmp_path / "zero", 1, {}))


def test_sha256_files_in_parallel(tmp_path: Path) -> None:
    paths = [write(tmp_path / f"f{i}", 3 * BLOCK + i, {i: b"x" * i}) for i in range(5)]
    sums = sha256_files([*paths, tmp_path / "missing"], parallel=4)
    for path in paths:
        assert sums[path] == hashlib.sha256(path.read_bytes()).hexdigest() == sha256_file(path)
    assert sums[tmp_path / "missing"] is None


def rchar() -> int:
    """Bytes this process has read so far (read(2) and the like)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_sha256_of_a_sparse_file_reads_only_its_data(tmp_path: Path) -> None:
    """The whole-file SHA256 of a 2 GiB raw image read 2 GiB of holes from the kernel; it
    reads the data and feeds the holes as zeros from memory (same digest as reading)."""
    size = 64 * BLOCK + 321
    chunks = {5 * BLOCK + 3: b"data", 40 * BLOCK: b"x" * (BLOCK + 9), size - 4: b"end!"}
    sparse = write(tmp_path / "sparse", size, chunks)
    dense = write(tmp_path / "dense", size, chunks, dense=True)
    expected = hashlib.sha256(dense.read_bytes()).hexdigest()
    before = rchar()
    assert sha256_file(sparse) == expected
    assert rchar() - before < 8 * BLOCK  # the data blocks, not the 64 MiB of holes
    before = rchar()
    assert sha256_file(dense) == expected
    assert rchar() - before >= size
    assert sha256_file(write(tmp_path / "empty", 0, {})) == hashlib.sha256(b"").hexdigest()


def test_sha256_known_hashes_an_unchanged_file_once(tmp_path: Path) -> None:
    """finalize hashed the raw image for the SBOMs, for SHA256SUMS and the image cache:
    three reads of 2 GiB; a file hashed (or copied from one) unchanged is not read again."""
    path = write(tmp_path / "image.raw", 4 * BLOCK, {BLOCK: b"one"})
    first = sha256_file(path)
    path.chmod(0o000)  # unreadable: an answer can only come from memory
    try:
        assert sha256_known(path) == first
    finally:
        path.chmod(0o644)
    write(path, 4 * BLOCK, {BLOCK: b"two"})  # changed (same size): hashed again
    assert sha256_known(path) == hashlib.sha256(path.read_bytes()).hexdigest() != first
    copy = tmp_path / "copy.raw"
    shutil.copyfile(path, copy)
    remember(copy, recall(path) or "")
    assert recall(copy) == sha256_known(path)


def test_content_digest_made_in_the_same_read_as_the_sha256(tmp_path: Path) -> None:
    """The image cache stored a build's outputs by reading the 2 GiB raw and the qcow2 once
    more for their sparse content digests (seconds on a loaded host): finalize makes them in
    the pass that makes the SHA256, and the store reads nothing (same digests as reading)."""
    size = 64 * BLOCK + 321
    chunks = {5 * BLOCK + 3: b"data", 20 * BLOCK: bytes(BLOCK),  # a written zero block
              40 * BLOCK: b"x" * (BLOCK + 9), size - 4: b"end!"}
    for name, dense in (("sparse", False), ("dense", True)):
        path = write(tmp_path / name, size, chunks, dense=dense)
        expected = sparse_sha256(path), hashlib.sha256(path.read_bytes()).hexdigest()
        path.touch()  # new ctime: what this process knew no longer applies
        assert recall_content(path) is None
        before = rchar()
        assert sha256_file(path, content=True) == expected[1]
        once = rchar() - before
        assert once < (8 * BLOCK if not dense else size + BLOCK)
        before = rchar()
        assert content_known(path) == expected[0]
        assert rchar() - before < BLOCK  # from memory
        path.touch()  # changed since hashed: read again
        before = rchar()
        assert content_known(path) == expected[0]
        assert rchar() - before >= 3 * BLOCK
    tail = write(tmp_path / "tail", 3 * BLOCK + 5, {3 * BLOCK: b"12345"})
    assert sha256_file(tail, content=True) and content_known(tail) == sparse_sha256(tail)


def test_exported_raw_copy_carries_the_content_digest(tmp_path: Path) -> None:
    """The raw output is a copy of the work image, hashed once: with ``content_digests``
    its content digest is known for the copy too (what the image cache store asks)."""
    raw = write(tmp_path / "img.raw", 16 * BLOCK, {BLOCK: b"boot", 9 * BLOCK: b"root"})
    exporter = Exporter(parallel=1, content_digests=True)
    result = exporter.export(raw, ("raw",), "none", tmp_path / "out", name="img")
    out = result.output_dir / "img.raw"
    expected = sparse_sha256(raw)
    before = rchar()
    assert content_known(out) == expected
    assert rchar() - before < BLOCK
    other = write(tmp_path / "other.raw", 16 * BLOCK, {BLOCK: b"else"})
    plain = Exporter(parallel=1).export(other, ("raw",), "none", tmp_path / "out2", name="img")
    assert recall_content(plain.output_dir / "img.raw") is None  # not asked: not made

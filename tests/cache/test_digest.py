"""The digests the caches check: whole-file SHA256 in parallel, and sparse-aware SHA256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from imagecomposer.foundation.digest import BLOCK, sha256_file, sha256_files, sparse_sha256


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

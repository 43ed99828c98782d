"""erofs through erofs-utils: the partition is copied out sparsely (fsck.erofs 1.5 takes no
offset), then ``fsck.erofs --extract`` checks every file while copying the tree out."""

from __future__ import annotations

import os
from pathlib import Path

from imagecomposer.compose.disk.sparse import copy_out
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import CorruptFilesystem
from imagecomposer.inspect.fs_dir import DirReader


def erofs_reader(disk: Path, offset: int, size: int, scratch: Path, where: str) -> DirReader:
    runner.require("fsck.erofs", "erofs-utils")
    root = os.geteuid() == 0  # fsck.erofs keeps owners only for the superuser

    def extract(target: Path) -> None:
        piece = scratch / "partition.img"
        copy_out(disk, offset, size, piece)
        try:
            target.rmdir()
            done = runner.run(["fsck.erofs", f"--extract={target}",
                               "--preserve" if root else "--no-preserve", piece],
                              capture=True, check=False, what="fsck.erofs --extract")
        finally:
            piece.unlink(missing_ok=True)
        if done.returncode != 0:
            raise CorruptFilesystem(f"Corrupt filesystem: erofs in {where} cannot be read: "
                                    f"{done.output_tail.strip()[-300:]}")

    return DirReader("erofs", extract, scratch / "tree", owners=root, modes=True)

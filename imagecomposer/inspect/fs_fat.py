"""FAT (ESP, XBOOTLDR) through mtools at the partition's offset: ``mcopy -i disk@@N``."""

from __future__ import annotations

from pathlib import Path

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import CorruptFilesystem
from imagecomposer.inspect.fs_dir import DirReader

MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0", "LC_ALL": "C.UTF-8"}


def fat_reader(disk: Path, offset: int, scratch: Path, where: str) -> DirReader:
    runner.require("mcopy", "mtools")

    def extract(target: Path) -> None:
        done = runner.run(["mcopy", "-s", "-n", "-m", "-p", "-i", f"{disk}@@{offset}", "::",
                           target], capture=True, check=False, env=MTOOLS_ENV,
                          what="mcopy -s")
        if done.returncode != 0:
            raise CorruptFilesystem(f"Corrupt filesystem: FAT in {where} cannot be read: "
                                    f"{done.output_tail.strip().splitlines()[-1:] or ['?']}")

    return DirReader("vfat", extract, scratch, owners=False, modes=False,
                     case_insensitive=True)


def fat_free_bytes(disk: Path, offset: int) -> int | None:
    """Free bytes as mtools counts them (``mdir`` scans the FAT)."""
    done = runner.run(["mdir", "-i", f"{disk}@@{offset}", "::"], capture=True, check=False,
                      env=MTOOLS_ENV, what="mdir")
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        if line.strip().endswith("bytes free"):
            return int("".join(ch for ch in line if ch.isdigit()))
    return None

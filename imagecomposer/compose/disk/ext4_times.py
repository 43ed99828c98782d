"""ext4 inode times bounded by the build epoch, after ``mke2fs -d``.

mke2fs (e2fsprogs 1.47.0) copies every file's atime, ctime and mtime from the tree: ctime is
when the build wrote the file and atime moves whenever anything reads it, so two builds
differ there even when the content and mtimes agree. :func:`clamp_inode_times` reads the
inode tables at the filesystem's offset (superblock, group descriptors, inode bitmaps;
nothing is mounted) and has one ``debugfs -w -f`` script set, for every inode in use,
``atime = ctime = mtime = min(mtime, epoch)`` in whole seconds (crtime is mke2fs's clock,
``E2FSPROGS_FAKE_TIME``, already the epoch).

Inodes are addressed by number (``sif <N> ...``): a path costs debugfs a directory lookup
per command, 15 s for the 19,000 entries of a minimal Debian root on the loaded dev host,
against 0.3 s by number. It also covers names a debugfs command line cannot quote.

debugfs echoes every command of its script on standard output (``debugfs: sif <N> ...``):
six lines per inode, ~100,000 for a minimal Debian root. That echo is captured and dropped
(the log gets one summary line; errors come on standard error, which is logged and kept for
the error message): logging it line by line cost 19 s of a 1 s debugfs run.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import ComposeError, DiskToolError

log = logging.getLogger(__name__)

SUPERBLOCK = 1024
MAGIC = 0xEF53
INCOMPAT_64BIT = 0x80
INODE_UNINIT = 0x1  # bg_flags: the group's inode table and bitmap are not initialized
ROOT = 2


def used_inodes(image: Path, offset: int = 0) -> Iterator[tuple[int, int]]:
    """``(inode number, mtime)`` of every inode in use in the ext4 filesystem at ``offset``
    of ``image`` (mtime in seconds, with the extra epoch bits of 256-byte inodes), the root
    directory and the files; not the reserved inodes (journal, resize, ...), whose times
    are mke2fs's clock."""
    fd = os.open(image, os.O_RDONLY)
    try:
        sb = os.pread(fd, 1024, offset + SUPERBLOCK)
        if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != MAGIC:
            raise ComposeError(f"no ext4 filesystem at offset {offset} of {image}")
        inodes_count, = struct.unpack_from("<I", sb, 0)
        first_data_block, log_block = struct.unpack_from("<II", sb, 0x14)
        per_group, = struct.unpack_from("<I", sb, 0x28)
        first_inode, inode_size = struct.unpack_from("<IH", sb, 0x54)
        incompat, = struct.unpack_from("<I", sb, 0x60)
        block = 1024 << log_block
        desc_size = struct.unpack_from("<H", sb, 0xFE)[0] if incompat & INCOMPAT_64BIT else 32
        groups = -(-inodes_count // per_group)
        table = os.pread(fd, groups * desc_size, offset + (first_data_block + 1) * block)
        for group in range(groups):
            desc = table[group * desc_size:(group + 1) * desc_size]
            bitmap, itable = struct.unpack_from("<II", desc, 4)
            flags, = struct.unpack_from("<H", desc, 0x12)
            if desc_size >= 64:
                bitmap |= struct.unpack_from("<I", desc, 0x24)[0] << 32
                itable |= struct.unpack_from("<I", desc, 0x28)[0] << 32
            if flags & INODE_UNINIT:
                continue
            used = os.pread(fd, per_group // 8, offset + bitmap * block)
            inodes = os.pread(fd, per_group * inode_size, offset + itable * block)
            for index in range(per_group):
                number = group * per_group + index + 1
                if not used[index // 8] >> (index % 8) & 1 or \
                        (number < first_inode and number != ROOT):
                    continue
                raw = inodes[index * inode_size:(index + 1) * inode_size]
                mtime, = struct.unpack_from("<i", raw, 0x10)
                if inode_size > 128 and struct.unpack_from("<H", raw, 0x80)[0] >= 12:
                    mtime += (struct.unpack_from("<I", raw, 0x88)[0] & 3) << 32
                yield number, mtime
    except struct.error:
        raise ComposeError(f"truncated ext4 metadata at offset {offset} of {image}") from None
    finally:
        os.close(fd)


def clamp_commands(image: Path, offset: int, epoch: int) -> list[str]:
    """The debugfs commands that give every inode in use ``min(mtime, epoch)`` (at least 0)
    as atime, ctime and mtime, with no fraction of a second."""
    commands = []
    for number, mtime in used_inodes(image, offset):
        stamp = min(max(mtime, 0), epoch)
        for field in ("atime", "ctime", "mtime"):
            # the extra field first: setting the time afterwards sets its epoch bits
            commands += [f"sif <{number}> {field}_extra 0", f"sif <{number}> {field} @{stamp}"]
    return commands


def clamp_inode_times(image: Path, offset: int, epoch: int, env: dict[str, str]) -> int:
    """Bound the inode times of the ext4 filesystem at ``offset`` of ``image`` by ``epoch``
    (one ``debugfs -w`` run with ``env``); return how many inodes it covered."""
    commands = clamp_commands(image, offset, epoch)
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as script:
        script.write("\n".join(commands) + "\n")
        script.flush()
        runner.run(["debugfs", "-w", "-f", script.name, f"{image}?offset={offset}"],
                   env=env, capture=True, error=DiskToolError,
                   what="debugfs (clamp timestamps)")
    log.debug("debugfs: times of %d inodes clamped to %d", len(commands) // 6, epoch)
    return len(commands) // 6

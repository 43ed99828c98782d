"""How many bytes a directory tree will need inside a filesystem.

:func:`plan_layout` sizes auto partitions from these figures and :func:`assemble` checks
free space with them. Allocated blocks are counted (not apparent sizes) plus one inode's
worth per entry, and hard links once.
"""

from __future__ import annotations

import os
from pathlib import Path

INODE_COST = 256
MIN_FILE = 4096


def tree_size(tree: Path) -> int:
    """Bytes ``tree`` occupies: data blocks rounded to 4 KiB, plus inode overhead."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(tree)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                total += INODE_COST
                if entry.is_dir(follow_symlinks=False):
                    total += MIN_FILE
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False) and st.st_size:
                    total += max(-(-st.st_size // MIN_FILE) * MIN_FILE, MIN_FILE)
    return total

"""What sealing the installed-tree cache costs on a real tree.

``python benchmarks/bench_seal.py [TREE] [--rounds N]``: TREE is an installed tree (default:
the largest one in the configured tree cache). Each round measures, into a scratch cache
with a scratch key under $TMPDIR: a bare ``cp -a`` (what a store and a restore cost before
the seal), the manifest alone (wall and CPU), a sealed store (``cp -a`` with the manifest
made from the source meanwhile) and a sealed restore (``cp -a``, then the copy checked
against the manifest). Prints the medians as a Markdown table.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from imagecomposer.cache import manifest
from imagecomposer.cache.trees import TREE, TreeCache, copy_tree
from imagecomposer.config import load_config
from imagecomposer.foundation.seal import SealKey


def default_tree() -> Path | None:
    root = load_config().config.tree_cache_dir
    found = [p / TREE for p in root.glob("v2-*") if (p / TREE).is_dir()]
    found += [p for p in root.glob("v1-*") if p.is_dir()]
    return max(found, key=lambda p: sum(1 for _ in p.rglob("*")), default=None)


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("tree", nargs="?", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tree = args.tree or default_tree()
    if tree is None:
        print("no installed tree to measure: give one, or build an image first")
        return 0
    captured = Captured()
    logging.getLogger("imagecomposer.cache.trees").addHandler(captured)
    logging.getLogger("imagecomposer.cache.trees").setLevel(logging.INFO)
    rows: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    paths = 0
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-seal-") as tmp:
            scratch = Path(tmp)
            start = time.monotonic()
            copy_tree(tree, scratch / "bare")
            record("bare cp -a (store or restore before the seal)", time.monotonic() - start)
            shutil.rmtree(scratch / "bare")
            start, cpu = time.monotonic(), time.process_time()
            paths = len(manifest.of_tree(tree))
            record("manifest alone, wall", time.monotonic() - start)
            record("manifest alone, CPU of this process", time.process_time() - cpu)
            cache = TreeCache(scratch / "cache", seal_key=SealKey(scratch / "key"))
            start = time.monotonic()
            cache.store("bench", tree)
            record("sealed store (cp -a, manifest meanwhile, seal, size count)",
                   time.monotonic() - start)
            captured.lines.clear()
            start = time.monotonic()
            assert cache.restore("bench", scratch / "root")
            record("sealed restore", time.monotonic() - start)
            found = re.search(r"copy ([\d.]+) s, checked \d+ paths against the sealed manifest "
                              r"in ([\d.]+) s", " ".join(captured.lines))
            if found:
                record("  of which cp -a", float(found.group(1)))
                record("  of which the check", float(found.group(2)))
    print(f"tree {tree}: {paths} paths; median of {args.rounds} rounds\n")
    print("| step | seconds |\n|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(values):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""inspect and compare figures, printed as a Markdown table.

    PYTHONPATH=. python benchmarks/bench_inspect.py [A.raw [B.raw]] [--qcow2 A.qcow2]
        [--verity V.raw] [--workdir DIR]

Goals (issue 13): inspect of the minimal example (2 GiB raw) in <= 2 s warm; compare of two
minimal images, files mode, in <= 10 s.

Without A, the minimal example is built (examples/debian-12-minimal.yml, from the Debian
archive the host's apt sources name) into the work directory; without B, a variant of it
with one package (less) and one file more. A's qcow2 next to it is used when present.
Also measured: the two ways of reading a qcow2 (convert all of it to a sparse raw, or
``qemu-img dd`` of the root partition), and the dm-verity check of ``--verity``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from imagecomposer.config import apply_overrides, load_config
from imagecomposer.inspect import Image, compare
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec import Spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAME = "debian-12-minimal"
Rows = list[tuple[str, str, str]]


def timed(label: str, rows: Rows, func: Callable[[], object], note: str = "") -> object:
    began = time.monotonic()
    result = func()
    rows.append((label, f"{time.monotonic() - began:.2f} s", note))
    return result


def build(work: Path, variant: bool) -> Path:
    loaded = apply_overrides(load_config(None), {"core.work_dir": str(work / "ws")}, "bench")
    spec_path = EXAMPLES / f"{NAME}.yml"
    if variant:
        shutil.copytree(EXAMPLES / "files", work / "files", dirs_exist_ok=True)
        text = spec_path.read_text().replace("ca-certificates]", "ca-certificates, less]")
        text = text.replace('destination: /etc/motd, mode: "0644"}\n',
                            'destination: /etc/motd, mode: "0644"}\n'
                            '    - {source: ./files/motd, destination: /etc/bench-marker}\n')
        spec_path = work / "variant.yml"
        spec_path.write_text(text)
    out = work / ("variant" if variant else "base")
    ImagePipeline(loaded.config).build(Spec.load(spec_path), BuildOptions(output_dir=out))
    return out / f"{NAME}.raw"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", nargs="?", type=Path)
    parser.add_argument("b", nargs="?", type=Path)
    parser.add_argument("--qcow2", type=Path)
    parser.add_argument("--verity", type=Path)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-inspect-", dir=args.workdir))
    rows: Rows = []
    try:
        a = args.a or build(work, variant=False)
        b = args.b or build(work, variant=True)
        qcow2 = args.qcow2 or a.with_suffix(".qcow2")
        size = f"{a.stat().st_size / (1 << 30):.1f} GiB {a.suffix[1:]}"

        def inspect(path: Path) -> Callable[[], object]:
            def run() -> object:
                with Image.open(path, workdir=work) as image:
                    return image.inspect()
            return run

        timed("inspect A, first run", rows, inspect(a), size)
        timed("inspect A, warm (goal <= 2 s)", rows, inspect(a), size)
        if qcow2.is_file():
            timed("inspect A as qcow2 (converted to sparse raw)", rows, inspect(qcow2),
                  f"{qcow2.stat().st_size >> 20} MiB file")
            raw = work / "converted.raw"
            timed("  qemu-img convert qcow2 -> sparse raw", rows, lambda: subprocess.run(
                ["qemu-img", "convert", "-O", "raw", qcow2, raw], check=True), "whole disk")
            raw.unlink()
            with Image.open(a) as image:
                root = image.partition("root")
            timed("  qemu-img dd of the root partition only", rows, lambda: subprocess.run(
                ["qemu-img", "dd", "-O", "raw", f"if={qcow2}", f"of={raw}", "bs=1M",
                 f"skip={root.start >> 20}", f"count={root.size >> 20}"], check=True),
                "not sparse")
            raw.unlink()

        def walk() -> object:
            with Image.open(a, workdir=work) as image:
                return len(image.files())
        count = timed("files of A's root with content hashes", rows, walk)
        rows[-1] = (*rows[-1][:2], f"{count} paths")
        for mode in ("summary", "packages", "files"):
            note = "goal <= 10 s" if mode == "files" else ""
            report = timed(f"compare A B --mode {mode}", rows,
                           lambda m=mode: compare(a, b, mode=m, workdir=work), note)
            if mode == "files":
                summary = report.summary  # type: ignore[attr-defined]
                rows[-1] = (*rows[-1][:2], f"{note}; +{summary.files_added} "
                            f"-{summary.files_removed} ~{summary.files_changed} files")
        if qcow2.is_file():
            timed("compare A A.qcow2 (identical: bytes)", rows,
                  lambda: compare(a, qcow2, workdir=work))
            timed("compare A A.qcow2 --hash (identical: sha256)", rows,
                  lambda: compare(a, qcow2, hash=True, workdir=work))
        if args.verity is not None:
            timed("inspect --verity image (hash tree recomputed)", rows, inspect(args.verity))
            rows[-1] = (*rows[-1][:2], "veritysetup verify on the data")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| step | time | note |\n|---|---|---|")
    for label, value, note in rows:
        print(f"| {label} | {value} | {note} |")


if __name__ == "__main__":
    main()

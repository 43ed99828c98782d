"""Conversion and compression times and sizes for a raw disk image.

Usage: PYTHONPATH=. python benchmarks/bench_export.py [IMAGE.raw] [--data-mib N]
       [--formats qcow2,vhdx,...] [--compressions zstd,gzip,pigz,xz] [--workdir DIR]

Without IMAGE, a 2 GiB sparse raw image is synthesized whose data (default 512 MiB) is made
of real files from the host's /usr (binaries, libraries, text: realistic compressibility),
laid out in runs like a filesystem would. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from imagecomposer.export import FORMATS, Exporter
from imagecomposer.foundation.runner import run


def synthesize(path: Path, size: int, data: int) -> Path:
    """A sparse raw image holding ``data`` bytes of host files in 64 MiB runs."""
    sources = (p for root in ("/usr/lib", "/usr/bin", "/usr/share")
               for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink())
    written = 0
    with path.open("wb") as out:
        out.truncate(size)
        offset = 1 << 20
        for src in sources:
            if written >= data:
                break
            try:
                chunk = src.read_bytes()[: data - written]
            except OSError:
                continue
            out.seek(offset)
            out.write(chunk)
            offset += len(chunk)
            written += len(chunk)
            if offset % (64 << 20) < len(chunk):  # leave holes between runs
                offset += 32 << 20
            if offset >= size - (1 << 20):
                break
    return path


def human_size(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", nargs="?", type=Path)
    parser.add_argument("--data-mib", type=int, default=512)
    parser.add_argument("--size-gib", type=int, default=2)
    parser.add_argument("--formats", default=",".join(f for f in FORMATS if f != "raw"))
    parser.add_argument("--compressions", default="zstd,pigz,gzip,xz")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-export-", dir=args.workdir))
    try:
        raw = args.image
        if raw is None:
            started = time.monotonic()
            raw = synthesize(work / "disk.raw", args.size_gib << 30, args.data_mib << 20)
            print(f"synthesized {raw} in {time.monotonic() - started:.1f} s")
        allocated = raw.stat().st_blocks * 512
        print(f"input: {raw}: {human_size(raw.stat().st_size)} virtual, {human_size(allocated)} "
              f"allocated; {os.cpu_count()} CPUs\n")
        exporter = Exporter()
        rows: list[tuple[str, float, int]] = []
        for fmt in [f for f in args.formats.split(",") if f]:
            out = work / f"out{FORMATS[fmt].suffix}"
            started = time.monotonic()
            exporter.convert(raw, fmt, out)
            rows.append((f"qemu-img → {fmt}", time.monotonic() - started,
                         out.stat().st_blocks * 512))
            out.unlink()
        out = work / "out.qcow2"
        started = time.monotonic()
        exporter.convert(raw, "qcow2", out, compressed=True)
        rows.append(("qemu-img → qcow2 -c", time.monotonic() - started, out.stat().st_size))
        out.unlink()
        for comp in [c for c in args.compressions.split(",") if c]:
            copy = work / "copy.raw"
            run(["cp", "--sparse=always", raw, copy])
            started = time.monotonic()
            if comp == "pigz":
                result = exporter.compress(copy, "gzip")
                label = "pigz -n (gzip)"
            elif comp == "gzip":  # single-threaded reference: what runs without pigz
                run(["gzip", "-n", "-f", copy])
                result = copy.with_name(copy.name + ".gz")
                label = "gzip -n (no pigz)"
            else:
                result = exporter.compress(copy, comp)
                label = {"zstd": "zstd -T0", "xz": "xz -T0"}[comp]
            rows.append((label, time.monotonic() - started, result.stat().st_size))
            result.unlink()
        print("| step | time | output size |\n|---|---:|---:|")
        for label, seconds, size in rows:
            print(f"| {label} | {seconds:.1f} s | {human_size(size)} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

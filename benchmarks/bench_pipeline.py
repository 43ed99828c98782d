"""Benchmark of the whole pipeline on an example spec (root, network once).

Measures in one run: a cold build (empty caches), a warm build (packages cached, installed
tree cache empty), a configuration-only rebuild (one file changed), an identical rebuild
(image cache hit) and boot-to-login of the result under QEMU. Prints a Markdown table.

    PYTHONPATH=. python benchmarks/bench_pipeline.py [--spec examples/debian-12-minimal.yml]
        [--work /var/tmp/icbench] [--no-boot]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagecomposer.boot import boot
from imagecomposer.config import apply_overrides, load_config
from imagecomposer.pipeline.build import BuildReport, ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec import Spec


def timed(label: str, rows: list[tuple[str, str]], pipeline: ImagePipeline, spec: Spec,
          options: BuildOptions) -> BuildReport:
    start = time.monotonic()
    report = pipeline.build(spec, options)
    seconds = time.monotonic() - start
    ran = ", ".join(f"{o.stage} {o.seconds:.1f}" for o in report.run.outcomes
                    if o.status == "ran") or "image cache hit"
    rows.append((label, f"{seconds:.2f} s ({ran})"))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=Path("examples/debian-12-minimal.yml"))
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/icbench"))
    parser.add_argument("--no-boot", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shutil.rmtree(args.work, ignore_errors=True)
    # A private copy of the spec directory, so that one file can be changed.
    spec_dir = args.work / "spec"
    shutil.copytree(args.spec.parent, spec_dir, ignore=shutil.ignore_patterns("output"))
    spec_path = spec_dir / args.spec.name
    loaded = apply_overrides(load_config(None, environ={}), {
        "core.cache_dir": str(args.work / "cache"), "core.work_dir": str(args.work / "work"),
    }, "command line")
    pipeline = ImagePipeline(loaded.config)
    out = args.work / "out"
    rows: list[tuple[str, str]] = []
    spec = Spec.load(spec_path)
    timed("cold build (empty caches)", rows, pipeline, spec, BuildOptions(output_dir=out))
    shutil.rmtree(args.work / "cache" / "trees")
    shutil.rmtree(args.work / "cache" / "images")
    shutil.rmtree(args.work / "work")
    timed("warm package cache, no tree cache", rows, pipeline, spec,
          BuildOptions(output_dir=out))
    motd = spec_dir / "files" / "motd"
    motd.write_text(motd.read_text() + "changed\n")
    spec = Spec.load(spec_path)
    timed("configuration-only rebuild", rows, pipeline, spec, BuildOptions(output_dir=out))
    timed("identical rebuild", rows, pipeline, spec, BuildOptions(output_dir=out))
    if not args.no_boot:
        result = boot(out / f"{spec.image.name}.raw", timeout=300)
        rows.append(("boot to login prompt", f"{result.seconds:.1f} s ({result.accelerator})"))
    print(f"| {spec.image.name} | time |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

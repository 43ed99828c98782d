"""N builds on a cluster of three workers against the same N built locally one after
another (issue 17): ``python benchmarks/bench_cluster.py [--builds N] [--work SECONDS]``.

Everything runs on this machine, started here: redis-server on 127.0.0.1, three worker
processes (separate work and cache directories, one shared store), the signed test archive
of tests/fixtures served on 127.0.0.1. The builds are the cluster tests' specs with their
stand-in compose and configuration stages (the real validate, packages, sign and finalize
stages run); ``--work`` adds that many seconds of simulated work to each configuration, as
a real build's minutes of installing and configuring would. On 2 cores the three workers
share the CPU, so what scales is waiting (downloads, sleeps), not computing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imagecomposer
from imagecomposer.config import load_config
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec.model import Spec
from tests.cluster.conftest import EXTRAS, Worker, config_file, free_port, served_archive
from tests.cluster.standins import STAGES


def specs(directory: Path, count: int) -> list[Path]:
    (directory / "files").mkdir(parents=True)
    (directory / "files" / "motd").write_text("benchmark\n")
    tools = [d.name for d in EXTRAS]
    paths = []
    for n in range(count):
        path = directory / f"b{n}.yml"
        path.write_text(
            f"image: {{name: b{n}, base: {{os: debian, version: '12'}}}}\n"
            f"customizations:\n  hostname: b{n}\n"
            f"  packages: {{install: [{tools[n % len(tools)]}]}}\n"
            "  files: [{source: ./files/motd, destination: /etc/motd}]\n"
            "output: {formats: [raw], sbom: []}\n")
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=6)
    parser.add_argument("--work", type=float, default=5.0,
                        help="seconds of simulated work per build (default 5)")
    args = parser.parse_args()
    server_bin = shutil.which("redis-server")
    if server_bin is None:
        print("redis-server is not installed (scripts/setup-host.sh installs it)")
        return 1
    os.environ["IMAGECOMPOSER_STANDIN_SECONDS"] = str(args.work)
    root = Path(tempfile.mkdtemp(prefix="ic-bench-cluster-"))
    os.environ.setdefault("IMAGECOMPOSER_SEAL_KEY", str(root / "cache.key"))
    port = free_port()
    redis = subprocess.Popen([server_bin, "--bind", "127.0.0.1", "--port", str(port),
                              "--save", "", "--appendonly", "no", "--dir", str(root)],
                             stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    workers: list[Worker] = []
    try:
        with served_archive(root) as archive:
            paths = specs(root / "specs", args.builds)
            local_host = root / "local"
            local_host.mkdir()
            config = load_config(config_file(local_host / "config.yml", local_host, archive,
                                             None)).config
            start = time.monotonic()
            pipeline = ImagePipeline(config, stages=STAGES, progress_bar=False)
            for path in paths:
                pipeline.build(Spec.load(path), BuildOptions(output_dir=root / "out" / path.stem))
            local = time.monotonic() - start

            for n in range(3):
                host = root / f"host{n}"
                host.mkdir()
                worker = Worker(f"w{n}", host, config_file(host / "config.yml", host, archive,
                                                           root / "shared"), url)
                worker.start()
                workers.append(worker)
            time.sleep(3)  # the workers connect (not part of a build's time)
            start = time.monotonic()
            results = imagecomposer.build_many(paths, cluster=url, timeout=600)
            cluster = time.monotonic() - start
            assert all(r.ok for r in results), [r.error for r in results]
            used = len({r.worker for r in results})
    finally:
        for worker in workers:
            worker.stop()
        redis.terminate()
        redis.wait()
        shutil.rmtree(root, ignore_errors=True)
    print(f"| builds | work per build | local, one after another | 3 workers ({used} used) "
          f"| speed-up |")
    print("|---|---|---|---|---|")
    print(f"| {args.builds} | {args.work:g} s | {local:.1f} s | {cluster:.1f} s | "
          f"{local / cluster:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())

"""Benchmark of the packages stage against the real archive (the host's apt sources).

Measures, in one run and on the same verified Packages files:
cold metadata load (empty cache), warm metadata load, warm metadata + resolve, the solve
alone, download throughput (into a throwaway store), and ``apt-get -s install`` of the same
request in a scratch root. Prints a table (Markdown) for docs/packages.md.

    PYTHONPATH=. python benchmarks/bench_packages.py [--os debian --version 12]
        [--type minimal] [--install openssh-server ...] [--repeat 5] [--no-download]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagecomposer.cache import PackageCache
from imagecomposer.config.model import Config, Core
from imagecomposer.families import provider_for
from imagecomposer.families.deb import DebProvider
from imagecomposer.resolver import Resolver
from imagecomposer.resolver.resolver import new_pool
from imagecomposer.spec.model import Base, Customizations, Image, Packages, Spec
from tests.fixtures.aptsim import AptSim


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(fn: Callable[[], object], repeat: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--os", default="debian")
    parser.add_argument("--version", default="12")
    parser.add_argument("--type", default="minimal")
    parser.add_argument("--install", nargs="*", default=["openssh-server"])
    parser.add_argument("--recommends", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-download", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    spec = Spec(image=Image(name="bench", base=Base(os=args.os, version=args.version,
                                                     type=args.type)),
                customizations=Customizations(packages=Packages(
                    install=tuple(args.install), recommends=args.recommends)))
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="ic-bench-") as tmp:
        config = Config(core=Core(cache_dir=Path(tmp) / "cache", work_dir=Path(tmp) / "work"))

        def load() -> DebProvider:
            provider = provider_for(spec, config)
            assert isinstance(provider, DebProvider)
            provider.load(new_pool(provider))
            return provider

        cold = timed(load)
        rows.append(("cold metadata load (download, verify, parse, write .solv)",
                     f"{cold:.2f} s"))
        warm_load = median(load, args.repeat)
        rows.append(("warm metadata load (304s, gpgv, .solv)", f"{warm_load:.3f} s"))
        resolver = Resolver(config)
        resolution = resolver.resolve(spec)
        warm_total = median(lambda: resolver.resolve(spec), args.repeat)
        rows.append(("warm metadata + resolve", f"{warm_total:.3f} s"))
        rows.append(("resolve alone (solve, order, lock)",
                     f"{max(warm_total - warm_load, 0):.3f} s"))
        lock = resolution.lock
        rows.append(("packages in the resolution", str(len(lock.packages))))

        provider = load()
        apt = AptSim(Path(tmp) / "apt", provider.index_files())
        theirs, _ = apt.simulate(lock.requested, recommends=args.recommends)
        apt_s = statistics.median(apt.simulate(lock.requested, recommends=args.recommends)[1]
                                  for _ in range(max(1, args.repeat // 2)))
        rows.append(("apt-get -s install, same request and indexes", f"{apt_s:.3f} s"))
        rows.append(("speed-up over apt-get -s", f"{apt_s / warm_total:.1f}x"))
        ours = {p.name: p.version for p in lock.packages}
        differences = len(set(ours.items()) ^ set(theirs.items()))
        same = "identical" if ours == theirs else f"{differences} differences"
        rows.append(("result vs apt (names and versions)", same))

        if not args.no_download:
            with PackageCache(config, enabled=False) as cache:
                start = time.perf_counter()
                cache.fetch(lock, parallel=config.core.parallel)
                seconds = time.perf_counter() - start
            mib = resolution.download_size / 2**20
            rows.append(("download (parallel 8, verified, throwaway store)",
                         f"{mib:.1f} MiB in {seconds:.2f} s = {mib / seconds:.1f} MiB/s"))
            with PackageCache(config) as shared:
                shared.fetch(lock)
                warm_fetch = timed(lambda: shared.fetch(lock))
            rows.append(("fetch again from the package cache (0 downloads)",
                         f"{warm_fetch:.3f} s"))

    request = f"{args.os} {args.version} {args.type} + {' '.join(args.install) or '-'}" + (
        " (recommends)" if args.recommends else "")
    width = max(len(r[0]) for r in rows)
    print(f"\nRequest: {request}\n")
    print(f"| {'measure':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

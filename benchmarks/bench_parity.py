"""apt parity corpus: how many requests resolve identically to apt, and how fast.

For every request of tests/packages/parity_corpus.py (on top of the minimal base), with and
without Recommends, on the Debian versions given: our warm resolve (metadata load
included) and ``apt-get -s install`` of the same request on the same verified index files.
Prints one Markdown row per request and a summary (identical count, total times).

    PYTHONPATH=. python benchmarks/bench_parity.py [--versions 12 13] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagecomposer.config.model import Config, Core
from imagecomposer.families import provider_for
from imagecomposer.families.deb import DebProvider
from imagecomposer.resolver import Resolver
from tests.fixtures.aptsim import AptSim
from tests.packages.conftest import make_spec
from tests.packages.parity_corpus import CORPUS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", nargs="*", default=["12", "13"])
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    names = args.only or list(CORPUS)
    rows: list[str] = []
    same = total = 0
    ours_total = apt_total = 0.0
    with tempfile.TemporaryDirectory(prefix="ic-parity-") as tmp:
        config = Config(core=Core(cache_dir=Path(tmp) / "cache", work_dir=Path(tmp) / "work"))
        for version in args.versions:
            base = make_spec(version=version)
            provider = provider_for(base, config)
            assert isinstance(provider, DebProvider)
            Resolver(config).resolve(base, provider=provider)  # metadata, once
            apt = AptSim(Path(tmp) / f"apt{version}", provider.index_files())
            for name in names:
                for recommends in (False, True):
                    spec = make_spec(CORPUS[name], recommends=recommends, version=version)
                    start = time.perf_counter()
                    lock = Resolver(config).resolve(spec).lock
                    ours_s = time.perf_counter() - start
                    theirs, apt_s = apt.simulate(lock.requested, recommends=recommends)
                    ours = {p.name: p.version for p in lock.packages}
                    differences = len(set(ours.items()) ^ set(theirs.items()))
                    total += 1
                    same += differences == 0
                    ours_total += ours_s
                    apt_total += apt_s
                    rows.append(f"| debian {version} | {name} | {'yes' if recommends else 'no'}"
                                f" | {len(ours)} | "
                                f"{'identical' if not differences else f'{differences} diff'}"
                                f" | {ours_s:.2f} | {apt_s:.2f} | {apt_s / ours_s:.1f}x |")
                    print(rows[-1], flush=True)
    print("\n| version | request | Recommends | packages | vs apt | ours (s) | apt-get -s (s)"
          " | speed-up |\n|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{same} of {total} identical to apt; ours {ours_total:.1f} s in total, "
          f"apt-get -s {apt_total:.1f} s ({apt_total / ours_total:.1f}x)")
    return 0 if same == total else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Run the benchmarks, each printing its own table: ``python -m benchmarks [NAME ...]``.

Names: packages, parity, disk, export, pipeline, inspect, seal, goals, cluster, compose
(default: all but compose, which needs tests/compose on the path and downloads its own
package set).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {"packages": "bench_packages.py", "parity": "bench_parity.py",
           "disk": "bench_disk.py",
           "export": "bench_export.py", "pipeline": "bench_pipeline.py",
           "inspect": "bench_inspect.py", "compose": "compose_vs_mmdebstrap.py",
           "seal": "bench_seal.py", "goals": "bench_goals.py",
           "cluster": "bench_cluster.py"}
DEFAULT = ("packages", "parity", "disk", "export", "pipeline", "inspect", "seal", "goals",
           "cluster")


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(SCRIPTS)}")
        return 2
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE.parent / "tests/compose")])}
    worst = 0
    for name in names or DEFAULT:
        print(f"\n## {name}\n", flush=True)
        code = subprocess.run([sys.executable, str(HERE / SCRIPTS[name])], env=env,
                              cwd=HERE.parent, check=False).returncode
        worst = max(worst, code)
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Every benchmark script imports (its imports follow the library's moves).

The benchmarks run outside the test suite (``nox -s bench``), so a moved module broke one
silently once (``compose.dpkg_install`` → ``families.deb.install``). Importing each script,
with the path ``python -m benchmarks`` gives it, catches that without running it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__main__")


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_imports(name: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests/compose")])}
    done = subprocess.run([sys.executable, "-c", f"import benchmarks.{name}"], env=env,
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_goal_builds_run_with_bytecode(tmp_path: Path) -> None:
    """The goals' CLI builds compiled every module again when this environment sets
    PYTHONDONTWRITEBYTECODE (0.5-1 s of each row, which an installed package does not pay):
    each build runs with its bytecode kept under the benchmark's work directory."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests/compose")]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    probe = (
        "import subprocess, sys\n"
        "from pathlib import Path\n"
        "import benchmarks.bench_goals as goals\n"
        "seen = {}\n"
        "def run(argv, env, **kwargs):\n"
        "    seen.update(env)\n"
        "    return subprocess.CompletedProcess(argv, 0, '', '')\n"
        "goals.subprocess.run = run\n"
        "goals.cli(Path(sys.argv[1]), 'spec.yml')\n"
        "print(seen.get('PYTHONDONTWRITEBYTECODE'), seen.get('PYTHONPYCACHEPREFIX'))\n")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["None", str(tmp_path / "pycache")]

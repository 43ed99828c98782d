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

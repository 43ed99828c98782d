"""The lock is a pure function of the spec and the repository metadata (deb).

Cold or warm metadata cache, another working directory, another process, another order of
loading the repositories: byte-identical lock files. (rpm: tests/rpm/test_rpm_lock.py.)
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from imagecomposer.config.model import Config
from imagecomposer.families.deb import DebProvider
from imagecomposer.resolver import Resolver
from tests.fixtures.debrepo import Deb, DebArchive
from tests.packages.conftest import make_spec

ROOT = Path(__file__).resolve().parents[2]


class ReversedLoad(DebProvider):
    """Loads the repositories last to first (libsolv ids come out differently)."""

    def load(self, pool: Any) -> list[Any]:
        self.sources.reverse()
        try:
            return super().load(pool)
        finally:
            self.sources.reverse()


def graph(seed: int = 0, size: int = 30) -> list[Deb]:
    """A tangle of Depends and Pre-Depends with cycles, written in no particular order.

    Its relations are stored in the written order when the index is parsed and sorted in
    a ``.solv`` file; libsolv's own transaction order differs between the two (seed 0 does).
    """
    rnd = random.Random(seed)
    names = [f"g{i:02d}" for i in range(size)]
    debs = []
    for name in names:
        deps = [d for d in rnd.sample(names, rnd.randint(0, 4)) if d != name]
        pre = [d for d in deps[:1] if rnd.random() < 0.3]
        debs.append(Deb(name, pre_depends=", ".join(pre),
                        depends=", ".join(deps[len(pre):])))
    return debs


def _archive(archive: DebArchive) -> None:
    archive.add("bookworm", *graph())
    archive.add("bookworm-updates", Deb("upd-one"), Deb("upd-two", depends="g03"))
    archive.add("bookworm-security", Deb("sec-one", depends="upd-one | g01"))
    archive.publish()


REQUEST = ("g00", "g01", "g02", "g03", "g04", "upd-two", "sec-one")


def _second_process(config: Config, cwd: Path) -> str:
    code = (
        "import sys, pickle; from imagecomposer.resolver import Resolver; "
        "config, spec = pickle.loads(sys.stdin.buffer.read()); "
        "sys.stdout.write(Resolver(config).resolve(spec).lock.to_json())")
    import pickle

    payload = pickle.dumps((config, make_spec(REQUEST)))
    proc = subprocess.run([sys.executable, "-c", code], input=payload, cwd=cwd,
                          capture_output=True, check=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return proc.stdout.decode()


def test_lock_bytes_do_not_depend_on_cache_process_cwd_or_load_order(
        config: Config, archive: DebArchive, tmp_path: Path) -> None:
    _archive(archive)
    spec = make_spec(REQUEST)
    cold = Resolver(config).resolve(spec).lock
    warm = Resolver(config).resolve(spec).lock
    reordered = Resolver(config).resolve(spec, provider=ReversedLoad(spec, config)).lock
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = _second_process(config, elsewhere)
    assert cold.to_json() == warm.to_json() == reordered.to_json() == other
    order = [p.name for p in cold.packages]
    assert order.index("libc6") < order.index("dpkg")  # Pre-Depends first

"""The rpm lock is a pure function of the spec and the repository metadata.

Cold or warm metadata cache, another working directory, another process, another order of
loading the repositories: byte-identical lock files (deb: tests/packages/
test_lock_determinism.py).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from rpm_helpers import RpmFixture, make_spec, resolve_lock

from imagecomposer.config.model import Config
from imagecomposer.families.rpm import RpmProvider
from imagecomposer.families.rpm.repomd import Repomd
from imagecomposer.lock import SignedIndex
from imagecomposer.resolver import Resolver

ROOT = Path(__file__).resolve().parents[2]
REQUEST = ("alpha", "rich", "mailer", "boolrec", "toolkit", "filedep", "fixture-systemd",
           "tangle00", "tangle01", "tangle02", "tangle03", "tangle04")


class ReversedLoad(RpmProvider):
    def load(self, pool: Any) -> list[Any]:
        order = dict(self._sources)
        self._sources = dict(reversed(order.items()))
        try:
            return super().load(pool)
        finally:
            self._sources = order


def _second_process(config: Config, spec: object, cwd: Path) -> str:
    code = ("import sys, pickle; from imagecomposer.resolver import Resolver; "
            "config, spec = pickle.loads(sys.stdin.buffer.read()); "
            "sys.stdout.write(Resolver(config).resolve(spec).lock.to_json())")
    proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((config, spec)),
                          cwd=cwd, capture_output=True, check=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return proc.stdout.decode()


def test_rpm_lock_bytes_are_a_function_of_the_inputs(rpm_fixture: RpmFixture,
                                                      rpm_config: Config,
                                                      tmp_path: Path) -> None:
    spec = make_spec(rpm_fixture, "main", "extra", "tangle", install=REQUEST, recommends=True)
    cold = Resolver(rpm_config).resolve(spec).lock.to_json()
    warm = Resolver(rpm_config).resolve(spec).lock.to_json()
    reordered = Resolver(rpm_config).resolve(
        spec, provider=ReversedLoad(spec, rpm_config)).lock.to_json()
    (tmp_path / "elsewhere").mkdir()
    other = _second_process(rpm_config, spec, tmp_path / "elsewhere")
    assert cold == warm == reordered == other
    order = [p["name"] for p in json.loads(cold)["packages"]]
    assert order.index("fixture-sh") < order.index("alpha")  # Requires(pre) first


def test_repomd_date_is_its_numeric_revision_else_its_newest_timestamp() -> None:
    assert Repomd({}, 1700000000, "1700000100").date == 1700000100  # createrepo_c's default
    assert Repomd({}, 1700000000, "fedora-40-updates").date == 1700000000
    assert Repomd({}, 1700000000, "99999999999").date == 1700000000  # beyond 2038: not a date
    assert Repomd({}, None, None).date is None


def test_the_lock_records_every_repomd_date(rpm_fixture: RpmFixture,
                                            rpm_config: Config) -> None:
    """Without SOURCE_DATE_EPOCH the newest of these dates is the build epoch."""
    lock = resolve_lock(make_spec(rpm_fixture, "main", "extra", install=("alpha",)),
                        rpm_config)
    dates = {}
    for repository in lock.repositories:
        text = (rpm_fixture.repos[repository.name] / "repodata/repomd.xml").read_text()
        found = re.search(r"<revision>(\d+)</revision>", text)
        assert found is not None
        dates[repository.name] = int(found.group(1))
    assert {r.name: r.date for r in lock.repositories} == dates
    assert lock.source_date == max(dates.values())


def test_the_lock_records_the_sha256_of_every_repomd(rpm_fixture: RpmFixture,
                                                      rpm_config: Config) -> None:
    """The signed index each repository's packages were verified with (issue 10), as the
    rpm family names it: repodata/repomd.xml under the repository's URL."""
    lock = resolve_lock(make_spec(rpm_fixture, "main", "extra", install=("alpha",)),
                        rpm_config)
    assert lock.repositories
    for repository in lock.repositories:
        served = (rpm_fixture.repos[repository.name] / "repodata/repomd.xml").read_bytes()
        assert repository.signed_index == SignedIndex(
            "repodata/repomd.xml", hashlib.sha256(served).hexdigest())

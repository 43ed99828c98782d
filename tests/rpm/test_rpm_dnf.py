"""Our rpm resolution against dnf's on the fixture repositories (dnf is the reference).

Each case is resolved by the family-generic Resolver (what builds use) and by
``dnf --installroot … --assumeno install`` with dnf's default
configuration on the same repositories: the packages and versions must be the same.
The cases cover rich/boolean dependencies, weak dependencies (Recommends, Supplements,
Suggests), Provides, Obsoletes, several versions with pins, repository priorities and
excludes (``remove:``). The 11 dnf runs go two at a time (~2 s each).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fixtures.dnfsim import DnfSim
from rpm_helpers import RpmFixture, make_spec

from imagecomposer.config.model import Config
from imagecomposer.resolver import Resolver
from imagecomposer.spec.model import Repository

pytestmark = pytest.mark.skipif(shutil.which("dnf") is None, reason="dnf is not installed")

# name: (repositories with their dnf priority, request, excludes, weak dependencies on/off)
Case = tuple[tuple[tuple[str, int], ...], tuple[str, ...], tuple[str, ...], tuple[bool, ...]]
MAIN = (("main", 99),)
CASES: dict[str, Case] = {
    # Requires, Recommends, rich (delta or epsilon) / (zeta if alpha), a virtual provide,
    # file dependencies from primary.xml and from filelists.xml
    "requires-rich-provides-files": (MAIN, ("alpha", "rich", "mailer", "filedep", "bindep"),
                                     (), (False, True)),
    "rich-alone": (MAIN, ("rich",), (), (False,)),
    # Requires (zeta or gamma), Recommends (epsilon or delta), Suggests, Supplements
    "boolean-weak-supplements": (MAIN, ("boolrec",), (), (False, True)),
    "provide-request-exclude": (MAIN, ("mta",), ("mta-exim",), (False,)),
    "obsoletes": (MAIN, ("oldtool", "toolkit"), (), (False,)),
    "pins": (MAIN, ("oldtool-1.0", "beta < 2.0"), (), (False,)),
    "versions-equal-priority": ((("main", 99), ("extra", 99)), ("alpha",), (), (False, True)),
    "priority-wins": ((("main", 10), ("extra", 99)), ("alpha",), (), (False,)),
}
KEYS = [(name, weak) for name, case in CASES.items() for weak in case[3]]


@pytest.fixture(scope="module")
def dnf_answers(rpm_fixture: RpmFixture, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[dict[tuple[str, bool], dict[str, str]]]:
    base = tmp_path_factory.mktemp("dnf")

    def one(key: tuple[str, bool]) -> dict[str, str]:
        name, weak = key
        repos, request, exclude, _ = CASES[name]
        sim = DnfSim(base / f"{name}-{weak}", {r: rpm_fixture.repo_url(r) for r, _ in repos},
                     dict(repos))
        return sim.simulate(request, weak=weak, exclude=exclude)

    with ThreadPoolExecutor(2) as pool:
        yield dict(zip(KEYS, pool.map(one, KEYS), strict=True))


@pytest.mark.parametrize(("case", "weak"), KEYS,
                         ids=[f"{n}-{'weak' if w else 'no-weak'}" for n, w in KEYS])
def test_same_as_dnf(case: str, weak: bool, rpm_fixture: RpmFixture, rpm_config: Config,
                     dnf_answers: dict[tuple[str, bool], dict[str, str]]) -> None:
    repos, request, exclude, _ = CASES[case]
    spec = make_spec(rpm_fixture, *(Repository(name=r, url=rpm_fixture.repo_url(r),
                                               key=rpm_fixture.key, kind="rpm", priority=p)
                                    for r, p in repos),
                     install=request, remove=exclude, recommends=weak)
    ours = {p.name: p.version for p in Resolver(rpm_config).resolve(spec).lock.packages}
    assert ours == dnf_answers[(case, weak)]

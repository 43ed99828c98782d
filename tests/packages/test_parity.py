"""apt parity: the parity corpus against ``apt-get -s install`` (marker ``network``).

Every request of tests/packages/parity_corpus.py, on top of the minimal base, for Debian 12
and 13, with and without Recommends, is resolved by imagecomposer and by apt on the same
verified index files; the packages and versions must be identical. apt's set is read from
``apt-get --print-uris install`` (the set ``apt-get -s`` prints, without ordering the
installation step by step, which is most of ``-s``'s time); ``test_print_uris_is_the_
simulated_set`` checks the two agree. The apt runs go two at a time while we resolve
(metadata is fetched once per session).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from imagecomposer.config.model import Config
from imagecomposer.resolver import Resolver
from tests.packages.conftest import make_spec
from tests.packages.parity_corpus import CORPUS

pytestmark = pytest.mark.network

VERSIONS = ("12", "13")
Key = tuple[str, str, bool]  # version, corpus name, recommends
KEYS: list[Key] = [(v, n, r) for v in VERSIONS for n in CORPUS for r in (False, True)]


@pytest.fixture(scope="module")
def parity(real_config: Config, real_apt: Callable[[str], Any]
           ) -> dict[Key, tuple[dict[str, str], dict[str, str]]]:
    """{key: (ours, apt's)} for the whole corpus."""
    found: dict[Key, tuple[dict[str, str], dict[str, str]]] = {}
    with ThreadPoolExecutor(2) as pool:
        pending: list[tuple[Key, dict[str, str], Future[Any]]] = []
        for key in KEYS:
            version, name, recommends = key
            lock = Resolver(real_config).resolve(
                make_spec(CORPUS[name], recommends=recommends, version=version)).lock
            ours = {p.name: p.version for p in lock.packages}
            apt = real_apt(version)
            pending.append((key, ours, pool.submit(apt.marked, lock.requested,
                                                   recommends=recommends)))
        for key, ours, future in pending:
            found[key] = (ours, future.result()[0])
    return found


@pytest.mark.parametrize(("version", "name", "recommends"), KEYS,
                         ids=[f"debian{v}-{n}-{'rec' if r else 'norec'}" for v, n, r in KEYS])
def test_identical_to_apt(parity: dict[Key, tuple[dict[str, str], dict[str, str]]],
                          version: str, name: str, recommends: bool) -> None:
    ours, theirs = parity[(version, name, recommends)]
    diff = {n: (ours.get(n), theirs.get(n)) for n in ours.keys() | theirs.keys()
            if ours.get(n) != theirs.get(n)}
    assert diff == {}
    assert len(ours) > 100


@pytest.mark.parametrize("version", VERSIONS)
def test_print_uris_is_the_simulated_set(real_apt: Callable[[str], Any],
                                         real_config: Config, version: str) -> None:
    spec = make_spec(CORPUS["mixed-server"], recommends=True, version=version)
    request = Resolver(real_config).resolve(spec).lock.requested
    apt = real_apt(version)
    assert apt.marked(request, recommends=True)[0] == apt.simulate(request,
                                                                   recommends=True)[0]


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 20 and len(KEYS) >= 80

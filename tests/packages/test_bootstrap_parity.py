"""The Debian bootstrap set against mmdebstrap's ``minbase`` (marker ``network``, ``root``).

pre_install scripts run after the family's bootstrap set is installed (issue 12):
:meth:`DebFamily.bootstrap`, Essential: yes and Priority: required and what they depend on,
the set ``debootstrap --variant=minbase`` and ``mmdebstrap --variant=minbase`` install. This
test asks mmdebstrap itself (``--simulate``: apt-get only, nothing downloaded or unpacked)
for Debian 12 and 13 (at once), on the same mirrors and suites our provider resolved against (the
host's apt sources), and compares its ``Inst`` lines with the bootstrap set of the minimal
base's lock: the same packages, the same versions. Measured: 96 packages for Debian 12, 78
for Debian 13; ~15 s for both (mmdebstrap's apt-get update of three suites each).
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from imagecomposer.config.model import Config
from imagecomposer.families import provider_for
from imagecomposer.families.deb import DebProvider
from imagecomposer.families.deb.family import DebFamily
from imagecomposer.resolver import Resolver
from tests.packages.conftest import make_spec

pytestmark = [pytest.mark.network, pytest.mark.root]


def mmdebstrap_minbase(provider: DebProvider) -> dict[str, str]:
    """``{name: version}`` of ``mmdebstrap --variant=minbase --simulate`` on ``provider``'s
    sources."""
    sources = [f"deb {s.url} {s.suite} {' '.join(s.components)}" for s in provider.sources]
    done = subprocess.run(
        ["mmdebstrap", "--verbose", "--variant=minbase", "--simulate",
         provider.sources[0].suite, "/dev/null", *sources],
        capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = {}
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("Inst "):
            name, version = line.split()[1:3]
            found[name] = version.strip("()")
    return found


VERSIONS = ("12", "13")
Sets = dict[str, tuple[dict[str, str], dict[str, str]]]


@pytest.fixture(scope="module")
def bootstrap_sets(real_config: Config) -> Sets:
    """{version: (our bootstrap set, mmdebstrap's minbase)}; mmdebstrap runs for both
    releases at once (most of its time is its apt-get update) while we resolve."""
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed (scripts/setup-host.sh installs it)")
    found: Sets = {}
    with ThreadPoolExecutor(len(VERSIONS)) as pool:
        pending = []
        for version in VERSIONS:
            spec = make_spec(version=version)
            provider = provider_for(spec, real_config)
            assert isinstance(provider, DebProvider)
            pending.append((version, provider, pool.submit(mmdebstrap_minbase, provider)))
        for version, provider, theirs in pending:
            lock = Resolver(real_config).resolve(make_spec(version=version),
                                                 provider=provider).lock
            ours = {p.name: p.version for p in DebFamily().bootstrap(lock, {})}
            found[version] = (ours, theirs.result())
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_bootstrap_set_is_mmdebstraps_minbase(bootstrap_sets: Sets, version: str) -> None:
    ours, theirs = bootstrap_sets[version]
    assert {n: (ours.get(n), theirs.get(n)) for n in ours.keys() | theirs.keys()
            if ours.get(n) != theirs.get(n)} == {}
    assert len(ours) > 50  # dash, coreutils, dpkg, apt, ...

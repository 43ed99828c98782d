"""The Debian bootstrap set against mmdebstrap's ``minbase`` (marker ``network``, ``root``).

pre_install scripts run after the family's bootstrap set is installed (issue 12):
:meth:`DebFamily.bootstrap`, Essential: yes and Priority: required and what they depend on,
the set ``debootstrap --variant=minbase`` and ``mmdebstrap --variant=minbase`` install. This
test asks mmdebstrap itself (``--simulate``: apt-get only, nothing downloaded or unpacked)
for Debian 12 and 13, on the same mirrors and suites our provider resolved against (the
host's apt sources), and compares its ``Inst`` lines with the bootstrap set of the minimal
base's lock: the same packages, the same versions. Measured: 96 packages for Debian 12, 78
for Debian 13, ~8 s per release (mmdebstrap's apt-get update of three suites).
"""

from __future__ import annotations

import shutil
import subprocess

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
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed (scripts/setup-host.sh installs it)")
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


@pytest.mark.parametrize("version", ["12", "13"])
def test_bootstrap_set_is_mmdebstraps_minbase(real_config: Config, version: str) -> None:
    spec = make_spec(version=version)
    provider = provider_for(spec, real_config)
    assert isinstance(provider, DebProvider)
    lock = Resolver(real_config).resolve(spec, provider=provider).lock
    ours = {p.name: p.version for p in DebFamily().bootstrap(lock, {})}

    theirs = mmdebstrap_minbase(provider)

    assert {n: (ours.get(n), theirs.get(n)) for n in ours.keys() | theirs.keys()
            if ours.get(n) != theirs.get(n)} == {}
    assert len(ours) > 50  # dash, coreutils, dpkg, apt, ...

"""read_only_root adds the profile's verity tools (veritysetup) to the resolution."""

from __future__ import annotations

import attrs

from imagecomposer.config.model import Config
from imagecomposer.families.profile import load_profile
from imagecomposer.resolver import Resolver
from imagecomposer.spec.model import Security
from tests.fixtures.debrepo import Deb, DebArchive
from tests.packages.conftest import make_spec
from tests.packages.test_resolve import names, republish


def test_profiles_name_veritysetup_for_read_only_roots() -> None:
    for os_name, version in (("debian", "12"), ("debian", "13"), ("ubuntu", "24.04")):
        assert load_profile(os_name, version).read_only_root == ("cryptsetup-bin",)


def test_read_only_root_requests_cryptsetup_bin(config: Config, archive: DebArchive) -> None:
    republish(archive, Deb("libcryptsetup12"),
              Deb("cryptsetup-bin", depends="libcryptsetup12"))
    plain = make_spec()
    assert "cryptsetup-bin" not in names(Resolver(config).resolve(plain))
    spec = attrs.evolve(plain, customizations=attrs.evolve(
        plain.customizations, security=Security(read_only_root=True)))
    resolution = Resolver(config).resolve(spec)
    got = names(resolution)
    assert {"cryptsetup-bin", "libcryptsetup12"} <= set(got)
    assert "cryptsetup-bin" in resolution.lock.requested

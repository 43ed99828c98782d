"""Against the real Debian archive named by the host's apt sources (marker ``network``).

Kept lean for CI: metadata is fetched once per session, the minimal set is downloaded
once, and the apt parity checks reuse the same verified Packages files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from imagecomposer.cache import PackageCache
from imagecomposer.config.model import Config, Core
from imagecomposer.families import provider_for
from imagecomposer.families.deb import DebProvider
from imagecomposer.resolver import Resolver
from tests.fixtures.aptsim import AptSim
from tests.packages.conftest import make_spec

pytestmark = pytest.mark.network

SERVER = ("postfix", "apache2", "python3-pip", "build-essential", "vim", "mariadb-server")


@pytest.fixture(scope="module")
def real_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("real")
    return Config(core=Core(cache_dir=root / "cache", work_dir=root / "work"))


@pytest.fixture(scope="module")
def apt(real_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AptSim:
    provider = provider_for(make_spec(), real_config)
    assert isinstance(provider, DebProvider)
    Resolver(real_config).resolve(make_spec(), provider=provider)
    return AptSim(tmp_path_factory.mktemp("apt"), provider.index_files())


def test_minimal_resolve_and_download(real_config: Config) -> None:
    res = Resolver(real_config).resolve(make_spec())
    lock = res.lock
    names = {p.name for p in lock.packages}
    assert {"base-files", "dpkg", "libc6", "systemd-sysv", "linux-image-amd64",
            "initramfs-tools", "udev", "systemd-boot"} <= names
    assert not {"openssh-server", "dracut"} & names
    with PackageCache(real_config) as cache:
        paths = cache.fetch(lock, parallel=8)
        again = PackageCache(real_config)
        assert again.missing(lock) == []
    for package in lock.packages[:5]:
        assert hashlib.sha256(paths[package.name].read_bytes()).hexdigest() == package.sha256
    assert sum(Path(p).stat().st_size for p in paths.values()) == res.download_size


@pytest.mark.parametrize("recommends", [False, True], ids=["no-recommends", "recommends"])
@pytest.mark.parametrize("extra", [("openssh-server",), ("openssh-server", *SERVER)],
                         ids=["base", "server"])
def test_apt_parity(real_config: Config, apt: AptSim, extra: tuple[str, ...],
                    recommends: bool) -> None:
    lock = Resolver(real_config).resolve(make_spec(extra, recommends=recommends)).lock
    ours = {p.name: p.version for p in lock.packages}
    theirs, _ = apt.simulate(lock.requested, recommends=recommends)
    diff = {n: (ours.get(n), theirs.get(n)) for n in ours.keys() | theirs.keys()
            if ours.get(n) != theirs.get(n)}
    assert diff == {}
    assert len(ours) > 100

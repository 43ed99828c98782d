"""Fixtures for the packages stage: a signed test archive served on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagecomposer.config.model import Config, Core, ProviderConfig
from imagecomposer.spec.model import Base, Customizations, Image, Packages, Repository, Spec
from tests.fixtures.debrepo import DebArchive, GpgKey, RepoServer, base_system

SUITES = ("bookworm", "bookworm-updates", "bookworm-security")


@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory: pytest.TempPathFactory) -> GpgKey:
    return GpgKey.create(tmp_path_factory.mktemp("gpg-archive"))


@pytest.fixture(scope="session")
def rogue_key(tmp_path_factory: pytest.TempPathFactory) -> GpgKey:
    return GpgKey.create(tmp_path_factory.mktemp("gpg-rogue"), "rogue <rogue@example.invalid>")


@pytest.fixture
def www(tmp_path: Path) -> Path:
    path = tmp_path / "www"
    path.mkdir()
    return path


@pytest.fixture
def archive(www: Path, gpg_key: GpgKey) -> DebArchive:
    """A Debian-12-shaped archive with the base system in bookworm, published."""
    arch = DebArchive(www / "debian", gpg_key)
    arch.add("bookworm", *base_system())
    arch.add("bookworm-updates")
    arch.add("bookworm-security")
    arch.publish()
    return arch


@pytest.fixture
def server(www: Path) -> Iterator[RepoServer]:
    with RepoServer(www) as srv:
        yield srv


def make_config(tmp_path: Path, mirror: str, keyring: Path, **provider: Any) -> Config:
    return Config(
        core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"),
        providers={"debian": ProviderConfig(kind="deb", mirror=mirror, security_mirror=mirror,
                                            keyring=keyring, **provider)},
    )


@pytest.fixture
def config(tmp_path: Path, server: RepoServer, archive: DebArchive, gpg_key: GpgKey) -> Config:
    return make_config(tmp_path, server.url + "/debian", gpg_key.keyring)


def make_spec(install: tuple[str, ...] = (), *, remove: tuple[str, ...] = (),
              recommends: bool = False, base_type: str = "minimal",
              repositories: tuple[Repository, ...] = (), os: str = "debian",
              version: str = "12") -> Spec:
    return Spec(
        image=Image(name="test", base=Base(os=os, version=version,
                                           type=base_type)),  # type: ignore[arg-type]
        customizations=Customizations(packages=Packages(install=install, remove=remove,
                                                        recommends=recommends)),
        repositories=repositories,
    )


# --- the real archive (network tests) -------------------------------------------------------


@pytest.fixture(scope="session")
def real_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """No provider configuration: mirrors come from the host's apt sources. One metadata
    cache for the whole session, so each index is fetched once."""
    root = tmp_path_factory.mktemp("real")
    return Config(core=Core(cache_dir=root / "cache", work_dir=root / "work"))


@pytest.fixture(scope="session")
def real_apt(real_config: Config, tmp_path_factory: pytest.TempPathFactory
             ) -> Callable[[str], Any]:
    """``real_apt("12")``: an AptSim on the verified Debian 12 index files (made once)."""
    from imagecomposer.families import provider_for
    from imagecomposer.families.deb import DebProvider
    from imagecomposer.resolver import Resolver
    from tests.fixtures.aptsim import AptSim

    made: dict[str, AptSim] = {}

    def get(version: str) -> AptSim:
        if version not in made:
            spec = make_spec(version=version)
            provider = provider_for(spec, real_config)
            assert isinstance(provider, DebProvider)
            Resolver(real_config).resolve(spec, provider=provider)
            made[version] = AptSim(tmp_path_factory.mktemp(f"apt{version}"),
                                   provider.index_files())
        return made[version]

    return get

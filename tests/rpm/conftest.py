"""Fixtures of the RPM tests: one signed fixture archive per session, served on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.rpmrepo import build_packages, serve, standard_repos
from rpm_helpers import RpmFixture

from imagecomposer.config.model import Config, Core, ProviderConfig

for tool in ("rpmbuild", "rpmsign", "createrepo_c", "gpg", "gpgv", "rpmkeys", "zstd"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed", allow_module_level=True)


@pytest.fixture(scope="session")
def rpm_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RpmFixture]:
    base = tmp_path_factory.mktemp("rpm-fixture")
    packages = build_packages(base / "build")
    repos = standard_repos(base / "repos", packages)
    with serve(base / "repos") as url:
        yield RpmFixture(base / "repos", url, packages, repos)


@pytest.fixture
def rpm_config(tmp_path: Path) -> Config:
    """A config declaring the profile-less rpm OS ``fixture``; a private cache."""
    return Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work"),
                  providers={"fixture": ProviderConfig(kind="rpm", mirror=None)})

"""Helpers shared by the RPM tests (fixtures are in conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import attrs
from fixtures.rpmrepo import Packages

from imagecomposer.config.model import Config
from imagecomposer.families.base import Provider
from imagecomposer.lock import Lock
from imagecomposer.resolver.resolver import Resolver
from imagecomposer.spec.model import (
    Base,
    Customizations,
    Image,
    Repository,
    Spec,
)
from imagecomposer.spec.model import (
    Packages as SpecPackages,
)


@attrs.frozen
class RpmFixture:
    root: Path  # served directory
    url: str  # its URL, ending with "/"
    packages: Packages
    repos: dict[str, Path]

    @property
    def key(self) -> Path:
        key: Path = self.packages.key_a.public
        return key

    def repo_url(self, name: str) -> str:
        return f"{self.url}{name}/"

    def copy_repo(self, name: str, new_name: str) -> Path:
        """A private copy of repository ``name`` (to tamper with), served as ``new_name``."""
        target = self.root / new_name
        shutil.copytree(self.repos[name], target)
        return target


def make_spec(fixture: RpmFixture, *repos: str | Repository, install: tuple[str, ...] = (),
              remove: tuple[str, ...] = (), recommends: bool = False, **base: Any) -> Spec:
    """A spec on the profile-less ``fixture`` OS drawing from the named fixture repos."""
    repositories = tuple(
        r if isinstance(r, Repository) else
        Repository(name=r, url=fixture.repo_url(r), key=fixture.key, kind="rpm")
        for r in (repos or ("main",)))
    return Spec(
        image=Image(name="rpm-test", base=Base(os=base.pop("os", "fixture"),
                                               version=base.pop("version", "1"), **base)),
        repositories=repositories,
        customizations=Customizations(packages=SpecPackages(
            install=install, remove=remove, recommends=recommends)))


def resolve_lock(spec: Spec, config: Config, *, provider: Provider | None = None) -> Lock:
    """The lock the real :class:`~imagecomposer.resolver.resolver.Resolver` makes for
    ``spec`` (the RPM tests check dnf semantics through the same code a build runs)."""
    return Resolver(config).resolve(spec, provider=provider).lock

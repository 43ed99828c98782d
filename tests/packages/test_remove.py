"""``customizations.packages.remove`` means one thing, owned by the family and applied at
resolution: a removed package never reaches a lock, so nothing is purged from an installed
tree (the composer's ``dpkg --purge`` is gone), and ``build --locked`` refuses a lock that
installs a removed package instead of building it anyway.

Hermetic: a signed test archive on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecomposer.config.model import Config
from imagecomposer.families import family
from imagecomposer.foundation.errors import LockError
from imagecomposer.pipeline.packages import run_packages_stage
from imagecomposer.resolver import Resolver
from tests.packages.conftest import make_spec


def test_a_removed_profile_package_never_reaches_the_lock(config: Config) -> None:
    server = Resolver(config).resolve(make_spec(base_type="server")).lock
    assert server.package("less") is not None  # Priority: important, the server set
    removed = Resolver(config).resolve(make_spec(base_type="server", remove=("less",))).lock
    assert removed.package("less") is None
    assert {p.name for p in removed.packages} == {p.name for p in server.packages} - {"less"}


def test_the_deb_rule_on_a_lock_is_the_resolution_rule(config: Config) -> None:
    lock = Resolver(config).resolve(make_spec(("openssh-server",))).lock
    deb = family("deb")
    assert deb.removed(lock, ()) == {}
    assert deb.removed(lock, ("openssh-*", "nothing-like-it")) == {
        "openssh-server": "openssh-*"}
    assert deb.removed(lock, ("openssh-server>=1:9",)) == {
        "openssh-server": "openssh-server>=1:9"}
    assert deb.removed(lock, ("openssh-server << 1:9",)) == {}  # 1:9.2p1-2 is not older


def test_locked_build_refuses_a_lock_installing_a_removed_package(
        config: Config, tmp_path: Path) -> None:
    lock_path = tmp_path / "out" / "test.lock.json"
    first = run_packages_stage(make_spec(("openssh-server",)), config, lock_path=lock_path)
    first.cache.close()
    assert first.lock.package("openssh-server") is not None
    with pytest.raises(LockError, match=r"the lock installs packages customizations\.packages"
                       r"\.remove removes: openssh-server \(remove: openssh-server\); resolve "
                       r"again without --locked"):
        run_packages_stage(make_spec(("xauth",), remove=("openssh-server",)), config,
                           lock_path=lock_path, locked=True)
    again = run_packages_stage(make_spec(("openssh-server",)), config, lock_path=lock_path,
                               locked=True)
    again.cache.close()
    assert again.lock == first.lock

"""RPM resolution against the fixture repositories: dnf semantics on libsolv."""

from __future__ import annotations

from pathlib import Path

import pytest
from rpm_helpers import RpmFixture, make_spec, resolve_lock

from imagecomposer.config.model import Config
from imagecomposer.families import family
from imagecomposer.foundation.errors import (
    ConfigError,
    DependencyError,
    LockError,
    PackageNotFound,
)
from imagecomposer.lock import Lock
from imagecomposer.pipeline.packages import run_packages_stage
from imagecomposer.spec.model import Repository


def names(lock: Lock) -> dict[str, str]:
    return {p.name: p.version for p in lock.packages}


def test_requires_and_versions(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    lock = resolve_lock(make_spec(rpm_fixture, install=("alpha",)), rpm_config)
    # beta >= 1.0: the highest version wins; /bin/sh (Requires(pre)) by file provides
    assert names(lock) == {"alpha": "1.0-1", "beta": "2.0-1", "fixture-sh": "1.0-1"}
    order = [p.name for p in lock.packages]
    assert order.index("fixture-sh") < order.index("alpha")  # scriptlet shell first
    assert lock.package("alpha") is not None
    alpha = lock.package("alpha")
    assert alpha is not None and alpha.depends == ("beta", "fixture-sh")
    assert alpha.kind == "rpm" and alpha.arch == "noarch" and alpha.source == "fixture-sh"
    assert alpha.url == f"{rpm_fixture.repo_url('main')}Packages/alpha-1.0-1.noarch.rpm"
    assert len(alpha.sha256) == 64 and alpha.size > 0


def test_weak_dependencies_off_by_default(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    off = resolve_lock(make_spec(rpm_fixture, install=("alpha",)), rpm_config)
    on = resolve_lock(make_spec(rpm_fixture, install=("alpha",), recommends=True), rpm_config)
    assert "gamma" not in names(off)
    assert "gamma" in names(on)


def test_rich_dependencies(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    alone = names(resolve_lock(make_spec(rpm_fixture, install=("rich",)), rpm_config))
    assert "zeta" not in alone  # (zeta if alpha): alpha is not installed
    assert len({"delta", "epsilon"} & set(alone)) == 1  # (delta or epsilon)
    both = names(resolve_lock(make_spec(rpm_fixture, install=("rich", "alpha")), rpm_config))
    assert "zeta" in both
    pinned = names(resolve_lock(make_spec(rpm_fixture, install=("rich", "epsilon")),
                               rpm_config))
    assert "epsilon" in pinned and "delta" not in pinned


def test_file_provides_primary_and_filelists(rpm_fixture: RpmFixture,
                                             rpm_config: Config) -> None:
    # /usr/bin/bintool is in primary.xml; /usr/libexec/helper/tool only in filelists.xml
    lock = resolve_lock(make_spec(rpm_fixture, install=("bindep", "filedep")), rpm_config)
    assert {"bintool", "helper"} <= set(names(lock))
    # a request by path works too
    lock = resolve_lock(make_spec(rpm_fixture, install=("/usr/libexec/helper/tool",)),
                       rpm_config)
    assert "helper" in names(lock)


def test_conflicts_are_explained(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    with pytest.raises(DependencyError) as info:
        resolve_lock(make_spec(rpm_fixture, install=("alpha", "conflictor")), rpm_config)
    message = str(info.value)
    assert message.startswith("Failed to resolve dependencies:")
    assert "conflictor-1.0-1.noarch conflicts with alpha" in message


def test_virtual_provide_picks_one(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    chosen = set(names(resolve_lock(make_spec(rpm_fixture, install=("mailer",)), rpm_config)))
    assert len(chosen & {"mta-exim", "mta-postfix"}) == 1


def test_remove_is_an_exclude(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    lock = resolve_lock(make_spec(rpm_fixture, install=("mailer",),
                                 remove=("mta-exim",)), rpm_config)
    assert "mta-postfix" in names(lock) and "mta-exim" not in names(lock)
    with pytest.raises(DependencyError) as info:
        resolve_lock(make_spec(rpm_fixture, install=("mailer",), remove=("mta-*",)),
                    rpm_config)
    assert "mailer" in str(info.value) and "excluded" in str(info.value)
    with pytest.raises(DependencyError, match="remove excludes beta"):
        resolve_lock(make_spec(rpm_fixture, install=("beta",), remove=("beta",)), rpm_config)
    # excluding the best version falls back to none: remove works on names, as dnf's
    # excludes do; an excluded dependency makes the requester fail with a readable reason
    with pytest.raises(DependencyError, match="beta"):
        resolve_lock(make_spec(rpm_fixture, install=("alpha",), remove=("beta",)), rpm_config)


def test_locked_lock_with_an_excluded_package_is_refused(rpm_fixture: RpmFixture,
                                                        rpm_config: Config,
                                                        tmp_path: Path) -> None:
    """``build --locked`` applies the excludes to the lock (the rule resolution applies)
    instead of installing a package ``remove:`` names."""
    lock_path = tmp_path / "lock.json"
    first = run_packages_stage(make_spec(rpm_fixture, install=("mailer",)), rpm_config,
                               lock_path=lock_path)
    first.cache.close()
    chosen = {"mta-exim", "mta-postfix"} & set(names(first.lock))
    assert family("rpm").removed(first.lock, ("mta-*", "zeta")) == dict.fromkeys(
        chosen, "mta-*")
    with pytest.raises(LockError, match=r"packages customizations\.packages\.remove removes: "
                       r"mta-\w+ \(remove: mta-\*\)"):
        run_packages_stage(make_spec(rpm_fixture, install=("mailer",), remove=("mta-*",)),
                           rpm_config, lock_path=lock_path, locked=True)


@pytest.mark.parametrize(("request_text", "version"), [
    ("beta-1.0", "1.0-1"),
    ("beta-1.0-1", "1.0-1"),
    ("beta-1.0-1.noarch", "1.0-1"),
    ("beta < 2.0", "1.0-1"),
    ("beta >= 2.0", "2.0-1"),
    ("beta = 2.0-1", "2.0-1"),
    ("beta.noarch", "2.0-1"),
])
def test_pins(rpm_fixture: RpmFixture, rpm_config: Config, request_text: str,
              version: str) -> None:
    lock = resolve_lock(make_spec(rpm_fixture, install=(request_text,)), rpm_config)
    assert names(lock)["beta"] == version


def test_glob(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    lock = resolve_lock(make_spec(rpm_fixture, install=("mta-*",)), rpm_config)
    assert {"mta-exim", "mta-postfix"} <= set(names(lock))


def test_unknown_package_suggests(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    with pytest.raises(PackageNotFound, match=r"Package not found: alhpa \(did you mean alpha"):
        resolve_lock(make_spec(rpm_fixture, install=("alhpa",)), rpm_config)
    with pytest.raises(PackageNotFound, match="no version matches"):
        resolve_lock(make_spec(rpm_fixture, install=("beta >= 9",)), rpm_config)


def _extra(fixture: RpmFixture, priority: int) -> Repository:
    return Repository(name="extra", url=fixture.repo_url("extra"), key=fixture.key,
                      kind="rpm", priority=priority)


def _main(fixture: RpmFixture, priority: int) -> Repository:
    return Repository(name="main", url=fixture.repo_url("main"), key=fixture.key,
                      kind="rpm", priority=priority)


@pytest.mark.parametrize(("main", "extra", "expected"), [
    (500, 500, ("3.0-1", "extra")),  # equal (dnf default 99): the highest version wins
    (99, 50, ("3.0-1", "extra")),  # lower number wins
    (10, 99, ("2.0-1", "main")),  # ... even against a higher version
    (99, 99, ("3.0-1", "extra")),
])
def test_priorities_follow_dnf(rpm_fixture: RpmFixture, rpm_config: Config, main: int,
                               extra: int, expected: tuple[str, str]) -> None:
    spec = make_spec(rpm_fixture, _main(rpm_fixture, main), _extra(rpm_fixture, extra),
                     install=("beta",))
    beta = resolve_lock(spec, rpm_config).package("beta")
    assert beta is not None and (beta.version, beta.repository) == expected


def test_priority_outside_dnf_range(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    with pytest.raises(ConfigError, match=r"1\.\.99"):
        resolve_lock(make_spec(rpm_fixture, _extra(rpm_fixture, 990), install=("beta",)),
                    rpm_config)


def test_allow_list(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    extra = Repository(name="extra", url=rpm_fixture.repo_url("extra"), key=rpm_fixture.key,
                       kind="rpm", packages=("nothing-*",))
    beta = resolve_lock(make_spec(rpm_fixture, "main", extra, install=("beta",)),
                       rpm_config).package("beta")
    assert beta is not None and beta.repository == "main"


def test_lock_round_trip(rpm_fixture: RpmFixture, rpm_config: Config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lock = resolve_lock(make_spec(rpm_fixture, install=("alpha", "mailer")), rpm_config)
    assert lock.kind == "rpm" and lock.os == "fixture" and lock.requested == ("alpha", "mailer")
    assert [r.name for r in lock.repositories] == ["main"]
    assert lock.repositories[0].kind == "rpm"
    path = tmp_path / "lock.json"
    lock.write(path)
    again = Lock.read(path)
    assert again == lock and again.hash == lock.hash
    # resolution is deterministic: a second run gives the same lock hash
    assert resolve_lock(make_spec(rpm_fixture, install=("alpha", "mailer")),
                       rpm_config).hash == lock.hash

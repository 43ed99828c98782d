"""Installing a resolved RPM set into a root with the host's rpm (scriptlets in a chroot)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import attrs
import pytest
from rpm_helpers import RpmFixture, make_spec, resolve_lock

from imagecomposer.config.model import Config
from imagecomposer.families import family
from imagecomposer.families.rpm import RpmProvider
from imagecomposer.families.rpm.install import find_rpmdb, install_rpms, rpm_command
from imagecomposer.foundation.errors import LockError, ScriptFailed
from imagecomposer.foundation.http import Http
from imagecomposer.lock import Lock

pytestmark = pytest.mark.root


def fetch(fixture: RpmFixture, config: Config, *install: str,
          directory: Path) -> tuple[RpmProvider, Lock, dict[str, Path]]:
    spec = make_spec(fixture, install=install)
    provider = RpmProvider(spec, config)
    lock = resolve_lock(spec, config, provider=provider)
    http = Http(config.credentials)
    files: dict[str, Path] = {}
    for package in lock.packages:
        path = files[package.name] = directory / family(package.kind).filename(package)
        http.download(package.url, path, sha256=package.sha256, size=package.size)
        provider.verify_package(package, path)
    return provider, lock, files


def query(tree: Path, dbpath: str, *args: str) -> list[str]:
    out = subprocess.run([*rpm_command(tree, dbpath, "sqlite"), *args], capture_output=True,
                         text=True, check=True).stdout
    return sorted(out.split())


def test_install_runs_scriptlets_and_fills_rpmdb(rpm_fixture: RpmFixture, rpm_config: Config,
                                                 tmp_path: Path) -> None:
    provider, lock, files = fetch(rpm_fixture, rpm_config, "alpha", "rich", "filedep",
                                  directory=tmp_path / "dl")
    tree = tmp_path / "tree"
    result = install_rpms(lock, files, tree, keys=provider.trusted_keys())
    assert result.packages == len(lock.packages)
    assert "alpha pre-install scriptlet ran in /" in result.output  # chrooted
    assert "alpha post-install scriptlet ran" in result.output
    assert (tree / "var/alpha-post.log").read_text() == "alpha-was-here\n"
    assert "alpha sees /dev/null and /proc" in result.output  # the sandbox's mounts
    for mountpoint in ("dev", "proc", "sys", "run"):  # ... are gone with the transaction
        assert not any((tree / mountpoint).iterdir()), mountpoint
    assert (tree / "usr/libexec/helper/tool").is_file()
    installed = query(tree, "/usr/lib/sysimage/rpm", "-qa", "--qf", "%{NAME}-%{VERSION}\\n")
    expected = sorted(f"{p.name}-{p.version.split('-')[0]}" for p in lock.packages)
    assert [n for n in installed if not n.startswith("gpg-pubkey")] == expected
    assert any(n.startswith("gpg-pubkey") for n in installed)  # the key, for the target's rpm
    assert find_rpmdb(tree) == ("/usr/lib/sysimage/rpm", "sqlite")
    assert (tree / "var/lib/rpm").resolve() == (tree / "usr/lib/sysimage/rpm").resolve()
    # the database is consistent: rpm verifies the installed files against it
    subprocess.run([*rpm_command(tree, "/usr/lib/sysimage/rpm", "sqlite"), "-V", "alpha"],
                   check=True)


def test_install_without_sandbox(rpm_fixture: RpmFixture, rpm_config: Config,
                                 tmp_path: Path) -> None:
    _, lock, files = fetch(rpm_fixture, rpm_config, "alpha", directory=tmp_path / "dl")
    result = install_rpms(lock, files, tmp_path / "tree", sandbox=False)
    assert "alpha post-install scriptlet ran" in result.output
    assert "alpha sees /dev/null" not in result.output  # plain rpm --root: no /dev, /proc


def test_install_el_dbpath_and_lock_order(rpm_fixture: RpmFixture, rpm_config: Config,
                                          tmp_path: Path) -> None:
    _, lock, files = fetch(rpm_fixture, rpm_config, "mailer", directory=tmp_path / "dl")
    tree = tmp_path / "tree"
    install_rpms(lock, files, tree, dbpath="/var/lib/rpm", order="lock")
    assert find_rpmdb(tree) == ("/var/lib/rpm", "sqlite")
    assert not (tree / "usr/lib/sysimage").exists()
    assert "mailer-1.0-1.noarch" in query(tree, "/var/lib/rpm", "-qa")


def test_failing_scriptlet(rpm_fixture: RpmFixture, rpm_config: Config,
                           tmp_path: Path) -> None:
    _, lock, files = fetch(rpm_fixture, rpm_config, "badpost", directory=tmp_path / "dl")
    with pytest.raises(ScriptFailed) as info:
        install_rpms(lock, files, tmp_path / "tree")
    message = str(info.value)
    assert "Script returned non-zero exit code 3: %post scriptlet of badpost" in message
    assert "badpost is about to fail" in message  # the tail of the output


def test_missing_package_file(rpm_fixture: RpmFixture, rpm_config: Config,
                              tmp_path: Path) -> None:
    _, lock, files = fetch(rpm_fixture, rpm_config, "alpha", directory=tmp_path / "dl")
    del files["beta"]
    with pytest.raises(LockError, match="beta"):
        install_rpms(lock, files, tmp_path / "tree")
    assert not (tmp_path / "tree").exists()
    assert find_rpmdb(tmp_path) is None


def test_composer_discards_a_failed_rpm_tree(rpm_fixture: RpmFixture, rpm_config: Config,
                                             tmp_path: Path) -> None:
    """Through the Composer (the compose stage's path): a failing %post leaves no tree and
    no installed-tree cache entry behind."""
    from imagecomposer.compose.composer import Composer

    _, lock, files = fetch(rpm_fixture, rpm_config, "badpost", directory=tmp_path / "dl")
    composer = Composer(rpm_config)
    with pytest.raises(ScriptFailed, match="%post scriptlet of badpost"):
        composer.installed_tree(lock, files, tmp_path / "work")
    assert not (tmp_path / "work/root").exists()
    assert composer.cache.lookup(composer.tree_key(lock)) is None


ESCAPE_SPEC = r"""
Name: escape
Version: 1.0
Release: 1
Summary: Its scriptlet tries to reach the host
License: MIT
BuildArch: noarch
Requires: /bin/sh

%description
Hostile fixture.

%post
for p in /proc/1/root /proc/1/cwd /proc/self/root /proc/$$/cwd; do
  read s < "$p%{secret}" && echo "ESCAPE read the host through $p: $s"
  echo pwned > "$p%{marker}" && echo "ESCAPE wrote the host through $p"
done
for fd in 3 4 5 6 7 8 9 10 11 12; do
  read s < "/proc/1/fd/$fd%{secret}" && echo "ESCAPE read the host through fd $fd: $s"
done
v=$(read v < /proc/sys/vm/swappiness; echo "$v")
echo "$v" > /proc/sys/vm/swappiness && echo "ESCAPE wrote a sysctl"
echo "escape scriptlet ran"
exit 0

%files
"""


def test_scriptlets_cannot_reach_the_host(rpm_fixture: RpmFixture, rpm_config: Config,
                                         tmp_path: Path) -> None:
    """A %post that looks for the host through rpm's own root, working directory and open
    files (rpm is PID 1 of the sandbox, and chroots into the tree only for the transaction)."""
    from fixtures.rpmrepo import rpmbuild

    from imagecomposer.lock import LockedPackage

    _, lock, files = fetch(rpm_fixture, rpm_config, "alpha", directory=tmp_path / "dl")
    secret, marker = tmp_path / "host-secret", tmp_path / "escaped"
    secret.write_text("host secret\n")
    (rpm,) = rpmbuild(ESCAPE_SPEC, tmp_path / "build",
                      {"secret": str(secret), "marker": str(marker)})
    escape = LockedPackage(name="escape", version="1.0-1", arch="noarch", repository="x",
                           url=rpm.as_uri(), sha256="0" * 64, size=rpm.stat().st_size,
                           kind="rpm")
    lock = attrs.evolve(lock, packages=(*lock.packages, escape))
    result = install_rpms(lock, {**files, "escape": rpm}, tmp_path / "tree")
    assert "escape scriptlet ran" in result.output
    assert "ESCAPE" not in result.output, result.output
    assert not marker.exists()
    assert secret.read_text() == "host secret\n"

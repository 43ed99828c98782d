"""Install a locked RPM package set into a root directory with the host's ``rpm --root``.

One ``rpm -i`` transaction installs everything, as dnf does: rpm chroots into the tree for
every scriptlet (so they run against the target's own ``/bin/sh`` and files) and orders the
transaction itself from the packages' ``Requires(pre/post)``; pass ``order="lock"`` to keep
the lock's (libsolv's) order instead (``--noorder``). rpm checks the dependencies again.

The rpm database is created where the target distribution's rpm looks for it (the profile's
``rpmdb``: ``/usr/lib/sysimage/rpm`` on Fedora, ``/var/lib/rpm`` on Enterprise Linux 9 and
Azure Linux) with the target's backend (sqlite); for the sysimage location the
``/var/lib/rpm`` compatibility symlink Fedora ships is created too. Package signatures are
not checked again here (``--nosignature``): the packages stage already checked each one
against the repository's configured keys (``RpmProvider.verify_package``); the keys can be
imported into the target's database (``keys=``) so that its own rpm trusts them later.

With the spec's ``pre_install`` scripts (:func:`install_in_phases`), two transactions: the
bootstrap set (:func:`bootstrap_set`: filesystem, setup, basesystem and the package that
provides ``/bin/sh``, with their dependencies: the base every RPM system starts from and
what a script needs to run), then the scripts, then the rest of the lock.

A failing scriptlet (even a %post, which rpm itself only warns about) raises
:class:`~imagecomposer.foundation.errors.ScriptFailed` with the tail of rpm's output. The tree is
then
incomplete: the caller (the Composer) discards it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import attrs

from imagecomposer.families.family import Family, with_dependencies
from imagecomposer.families.rpm.profile import bare_profile, load_rpm_profile, profile_path
from imagecomposer.foundation import runner
from imagecomposer.foundation.epoch import epoch_env, resolve
from imagecomposer.foundation.errors import (
    CommandError,
    ComposeError,
    DependencyError,
    ImageComposerError,
    LockError,
    ScriptFailed,
)
from imagecomposer.foundation.events import EventSink, InstallStep
from imagecomposer.foundation.sandbox import host_tool_argv
from imagecomposer.lock import Lock, LockedPackage

log = logging.getLogger("imagecomposer.rpm")

SYSIMAGE_DBPATH = "/usr/lib/sysimage/rpm"


@attrs.frozen
class RpmInstallResult:
    packages: int
    seconds: float
    output: str  # rpm's standard output: scriptlet output and the -v progress lines


def _ordered_paths(lock: Lock, packages: Mapping[str, Path]) -> list[Path]:
    if lock.kind != "rpm":
        raise LockError(f"install_rpms needs an rpm lock, not a {lock.kind} one")
    missing = [p.name for p in lock.packages if p.name not in packages]
    if missing:
        raise LockError(f"packages missing from the download set: {', '.join(missing)}")
    paths = [packages[p.name] for p in lock.packages]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise LockError(f"package files do not exist: {', '.join(absent)}")
    return paths


def prepare_tree(tree: Path, dbpath: str) -> None:
    """Directories rpm needs before the first package lands (it writes scriptlets to
    ``/var/tmp`` of the root) and the compatibility symlink of the sysimage database."""
    tree.mkdir(parents=True, exist_ok=True)
    vartmp = tree / "var" / "tmp"
    if not vartmp.exists():
        vartmp.mkdir(parents=True)
        vartmp.chmod(0o1777)
    (tree / dbpath.lstrip("/")).mkdir(parents=True, exist_ok=True)
    if dbpath == SYSIMAGE_DBPATH:
        legacy = tree / "var" / "lib" / "rpm"
        if not legacy.exists() and not legacy.is_symlink():
            legacy.parent.mkdir(parents=True, exist_ok=True)
            legacy.symlink_to("../../usr/lib/sysimage/rpm")


def rpmdb_location(lock: Lock) -> tuple[str, str]:
    """(path, backend) of the rpm database the lock's OS expects (its profile's ``rpmdb``;
    the sysimage location with sqlite for an OS without a shipped profile). Read from the
    profile the lock names, not from a spec: the installed tree depends on the lock alone."""
    profile = (load_rpm_profile(lock.os, lock.version)
               if profile_path(lock.os, lock.version).is_file()
               else bare_profile(lock.os, lock.version))
    return profile.rpmdb.path, profile.rpmdb.backend


DBPATHS = (SYSIMAGE_DBPATH, "/var/lib/rpm")
_DB_FILES = {"rpmdb.sqlite": "sqlite", "Packages.db": "ndb", "Packages": "bdb_ro"}


def find_rpmdb(tree: Path) -> tuple[str, str] | None:
    """(dbpath, backend) of the rpm database in ``tree``, or None.

    Anything that queries an image's rpm database with the host's rpm must pass ``--dbpath``
    (and the backend): Debian's rpm looks in ``/root/.rpmdb`` by default, not where the
    target distribution keeps it.
    """
    for dbpath in DBPATHS:
        directory = tree / dbpath.lstrip("/")
        if directory.is_symlink():
            continue  # /var/lib/rpm -> ../../usr/lib/sysimage/rpm: found under its target
        for name, backend in _DB_FILES.items():
            if (directory / name).is_file():
                return dbpath, backend
    return None


def rpm_command(tree: Path, dbpath: str, db_backend: str) -> list[str]:
    """``rpm`` aimed at ``tree``'s database (also what tests and users query it with)."""
    return [runner.require("rpm", "rpm"), "--root", str(tree), "--dbpath", dbpath,
            "--define", f"_db_backend {db_backend}"]


# Seen by every scriptlet: no kernel-install/dracut run per kernel package (the configuration
# stage builds the initramfs once), and systemd tools know they run offline.
SCRIPTLET_ENV = {"KERNEL_INSTALL_BYPASS": "1", "SYSTEMD_OFFLINE": "1"}


def sandboxed(tree: Path, argv: Sequence[str], host_paths: Sequence[Path] = (),
              env: Mapping[str, str] | None = None) -> list[str]:
    """``argv`` (the host's rpm acting on ``tree``) in the compose sandbox: a root holding
    only the host's ``/usr``, the tree and ``host_paths`` (read-only), reduced capabilities
    plus ``sys_chroot`` (rpm chroots into the tree for the transaction)."""
    runner.require("unshare", "util-linux")
    return host_tool_argv(tree, argv, host_paths=host_paths, env=env or SCRIPTLET_ENV,
                          capabilities=("sys_chroot",))


def install_rpms(lock: Lock, packages: Mapping[str, Path], tree: Path, *,
                 events: EventSink | None = None,
                 dbpath: str = SYSIMAGE_DBPATH, db_backend: str = "sqlite",
                 keys: Sequence[Path] = (), order: Literal["rpm", "lock"] = "rpm",
                 sandbox: bool = True, timeout: float | None = None,
                 epoch: int | None = None) -> RpmInstallResult:
    """Install ``lock``'s packages (files from ``packages``, by name) into ``tree``.

    Scriptlets see ``SOURCE_DATE_EPOCH`` = ``epoch`` (default
    :func:`imagecomposer.foundation.epoch.build_epoch`).

    ``sandbox`` runs the transaction in the compose sandbox
    (:func:`imagecomposer.foundation.sandbox.host_tool_argv`): the tree has ``/proc``, ``/sys``,
    a minimal ``/dev`` and ``/run``, so scriptlets redirect to ``/dev/null`` and read
    ``/proc`` like on a real system; they have no network, no host file but the host's
    read-only ``/usr`` and the package files, reduced capabilities, and any daemon they
    start dies with the transaction. Needs root.
    """
    paths = [p.absolute() for p in _ordered_paths(lock, packages)]
    tree = tree.absolute()
    started = time.monotonic()
    if events is not None:
        events(InstallStep(f"rpm transaction of {len(paths)} packages into {tree}"))
    prepare_tree(tree, dbpath)
    rpm = rpm_command(tree, dbpath, db_backend)
    runner.run([*rpm, "--initdb"], what="rpm --initdb")
    for key in keys:
        runner.run([*rpm, "--import", str(key)], what=f"rpm --import {key}")
    argv = [*rpm, "--define", "_pkgverify_level digest", "--nosignature", "-i", "-v",
            *(["--noorder"] if order == "lock" else []), *map(str, paths)]
    env = {**SCRIPTLET_ENV, **epoch_env(resolve(epoch))}
    if sandbox:
        argv = sandboxed(tree, argv, sorted({p.resolve().parent for p in paths}), env)
    done = runner.run(argv, capture=True, check=False, timeout=timeout,
                      env=None if sandbox else env,
                      what=f"rpm transaction of {len(paths)} packages")
    output = done.stdout.decode("utf-8", "replace")
    for line in output.splitlines():
        log.debug("rpm: %s", line)
    # rpm only warns about a failing %post/%posttrans (exit code 0): an image with a
    # half-configured package is still a failed build.
    if done.returncode != 0 or _SCRIPTLET.search(done.output_tail + "\n" + output):
        raise _failure(done, output)
    seconds = time.monotonic() - started
    if events is not None:
        events(InstallStep(f"installed {len(paths)} rpm packages in {seconds:.1f} s"))
    return RpmInstallResult(len(paths), seconds, output)


# The base of every RPM system, by the names Fedora, Enterprise Linux and Azure Linux use:
# the directory tree, the account and configuration files, the base system's meta-package
BOOTSTRAP = ("filesystem", "setup", "basesystem")
SHELL = "/bin/sh"  # and whatever provides it: what scriptlets and pre_install scripts run


def shell_providers(paths: Sequence[Path]) -> list[str]:
    """The names of the packages among the files ``paths`` that provide ``/bin/sh`` (read
    from their headers: the lock records no provides)."""
    if not paths:
        return []
    done = runner.run([runner.require("rpm", "rpm"), "-qp", "--nosignature", "--nodigest",
                       "--qf", "%{NAME}[\t%{PROVIDENAME}]\n", *map(str, paths)],
                      capture=True, what="rpm -qp (who provides /bin/sh)")
    found: list[str] = []
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        name, *provides = line.split("\t")
        if SHELL in provides and name not in found:
            found.append(name)
    return found


def bootstrap_set(lock: Lock, packages: Mapping[str, Path]) -> tuple[LockedPackage, ...]:
    """:data:`BOOTSTRAP` and the ``/bin/sh`` providers of ``lock`` with their dependencies
    in the lock, in the lock's order."""
    paths = _ordered_paths(lock, packages)
    return with_dependencies(lock, (*BOOTSTRAP, *shell_providers(paths)))


def install_in_phases(lock: Lock, packages: Mapping[str, Path], tree: Path,
                      pre_install: Callable[[Path], None], *, dbpath: str = SYSIMAGE_DBPATH,
                      db_backend: str = "sqlite", events: EventSink | None = None,
                      timeout: float | None = None, epoch: int | None = None) -> None:
    """:func:`install_rpms` of the bootstrap set, ``pre_install(tree)``, then
    :func:`install_rpms` of the rest of ``lock`` (the options: install_rpms's)."""
    first, rest = Family.phases(lock, bootstrap_set(lock, packages))
    if not first.packages:
        raise ComposeError(f"the lock has no package providing {SHELL} nor any of "
                           f"{', '.join(BOOTSTRAP)}: nothing to run pre_install scripts on")
    for phase in (first, rest):
        if phase is rest:
            pre_install(tree)
        if phase.packages:
            install_rpms(phase, packages, tree, dbpath=dbpath, db_backend=db_backend,
                         events=events, timeout=timeout, epoch=epoch)


_SCRIPTLET = re.compile(r"%(\w+)\(([^)]+)\) scriptlet failed, exit status (\d+)")


def _failure(done: runner.Completed, output: str) -> ImageComposerError:
    text = (output + "\n" + done.output_tail).strip()
    tail = runner.tail(text)
    scriptlet = _SCRIPTLET.search(text)
    if scriptlet:
        phase, package, status = scriptlet.groups()
        return ScriptFailed(
            f"Script returned non-zero exit code {status}: %{phase} scriptlet of {package}",
            done.argv, done.returncode, tail)
    if "Failed dependencies" in text:
        return DependencyError("Failed to resolve dependencies: rpm refused the transaction\n"
                               + tail)
    return CommandError(f"rpm transaction failed with exit code {done.returncode}",
                        done.argv, done.returncode, tail)

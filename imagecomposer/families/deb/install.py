"""Install a locked Debian package set into an empty tree, the way mmdebstrap does it.

Driven by our own resolution, not by apt: the :class:`Lock` already holds the transaction
order and the package cache the verified .deb files. The steps:

1. merged-/usr symlinks (``/bin -> usr/bin`` ...), as debootstrap and mmdebstrap create them
   for Debian 12 and later;
2. the Essential set (Essential: yes, Priority: required and their dependencies) is extracted
   with ``dpkg-deb --fsys-tarfile | tar`` so that the tree has a shell, a libc and dpkg;
3. inside the sandbox (see :mod:`imagecomposer.foundation.sandbox`: the tree as root, reduced
   capabilities, no network, package files read-only): ONE ``dpkg --unpack`` of
   every package in transaction order, then ONE ``dpkg --configure -a``. Per-package calls
   would cost a dpkg database load each.

Speed: ``--force-unsafe-io`` and, when the host has it, libeatmydata preloaded (copied into
the sandbox's private ``/run`` so it never lands in the tree). Progress: dpkg's output is read
as it comes, each ``Unpacking``/``Setting up`` line is a
:class:`~imagecomposer.foundation.events.Progress` event (``unpacking`` / ``configuring``, N of
the lock's packages). Nothing starts:
``/usr/sbin/policy-rc.d`` answers 101 during the install. ``update-initramfs`` is diverted to a
no-op while packages are configured (the kernel postinst and the initramfs-tools trigger would
otherwise each build an initrd, ~10 s apiece); :func:`imagecomposer.compose.initramfs.build`
runs it once, after fstab exists. All of these are undone before returning.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path

from imagecomposer.families.family import with_dependencies
from imagecomposer.foundation import normalize, runner
from imagecomposer.foundation.epoch import epoch_env, resolve
from imagecomposer.foundation.errors import CommandError, ComposeError, LockError, ScriptFailed
from imagecomposer.foundation.events import EventSink, Progress
from imagecomposer.foundation.rootfs import Root
from imagecomposer.foundation.sandbox import run_in_chroot
from imagecomposer.lock import Lock, LockedPackage

log = logging.getLogger(__name__)

# By Lock.arch: the resolver records the family's name (amd64), specs use x86_64.
MERGED_USR = {"x86_64": ("bin", "sbin", "lib", "lib64"), "amd64": ("bin", "sbin", "lib", "lib64"),
              "aarch64": ("bin", "sbin", "lib"), "arm64": ("bin", "sbin", "lib")}
POLICY_RC_D = "usr/sbin/policy-rc.d"
# What dpkg, debconf and apt leave that differs from build to build (DebFamily.leftovers):
# the previous databases, the logs (wall-clock times of every action), apt's binary caches
LEFTOVERS = (
    "/var/lib/dpkg/status-old", "/var/lib/dpkg/available-old", "/var/lib/dpkg/diversions-old",
    "/var/lib/dpkg/statoverride-old",
    "/var/cache/debconf/config.dat-old", "/var/cache/debconf/templates.dat-old",
    "/var/cache/debconf/passwords.dat-old",
    "/var/log/dpkg.log", "/var/log/alternatives.log", "/var/log/bootstrap.log",
    "/var/log/apt/history.log", "/var/log/apt/term.log", "/var/log/apt/eipp.log.xz",
    "/var/cache/apt/pkgcache.bin", "/var/cache/apt/srcpkgcache.bin",
)
UPDATE_INITRAMFS = "/usr/sbin/update-initramfs"
DIVERTED_SUFFIX = ".imagecomposer"
PKG_MOUNT = "/run/imagecomposer/packages"
EATMYDATA_MOUNT = "/run/imagecomposer/libeatmydata.so"
EATMYDATA_HOST = (
    Path("/usr/lib/x86_64-linux-gnu/libeatmydata.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/libeatmydata.so.1"),
    Path("/usr/lib/libeatmydata.so.1"),
)
DPKG_OPTIONS = ("--force-unsafe-io", "--force-confdef", "--force-confold")


def essential_set(lock: Lock) -> list[LockedPackage]:
    """Packages to extract before dpkg runs: Essential, required, and what they depend on.

    In transaction order. Extracting a few packages more than strictly needed is harmless:
    dpkg unpacks every package again right after and takes ownership of the files.
    """
    return list(with_dependencies(
        lock, (p.name for p in lock.packages if p.essential or p.priority == "required")))


def package_files(lock: Lock, packages: Mapping[str, Path]) -> list[Path]:
    """The .deb of every locked package, in transaction order; LockError names what is missing."""
    missing = [p.name for p in lock.packages
               if p.name not in packages or not Path(packages[p.name]).is_file()]
    if missing:
        raise LockError(
            f"{len(missing)} locked package(s) are not in the package cache: "
            + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
    if lock.kind != "deb":
        raise ComposeError(f"cannot install {lock.kind} packages with dpkg")
    return [Path(packages[p.name]) for p in lock.packages]


def install(lock: Lock, packages: Mapping[str, Path], tree: Path, *,
            eatmydata: bool = True, timeout: float | None = None,
            events: EventSink | None = None, parallel: int = 1,
            epoch: int | None = None,
            pre_install: Callable[[Path], None] | None = None) -> None:
    """Install every package of ``lock`` into the empty directory ``tree`` (``events``
    receives the unpacking and configuring progress; ``parallel``: the Essential packages
    extracted at a time).

    Maintainer scripts run with ``SOURCE_DATE_EPOCH`` = ``epoch`` (default
    :func:`imagecomposer.foundation.epoch.build_epoch`): the accounts ``adduser`` and
    ``pwconv`` write get it as their password change date, not the day of the build.

    ``pre_install`` (the spec's pre_install scripts): the lock is installed in two phases,
    the bootstrap set (:func:`essential_set`: what debootstrap's ``minbase`` variant
    installs) unpacked and configured first, then ``pre_install(tree)`` on that tree (no
    policy-rc.d, no diversion, nothing of ours in it: a finished minimal system), then the
    rest of the lock unpacked and configured; mmdebstrap's ``--essential-hook`` runs at the
    same point. None: one phase, every package unpacked then configured together.
    """
    files = package_files(lock, packages)
    tree.mkdir(parents=True, exist_ok=True)
    if any(tree.iterdir()):
        raise ComposeError(f"install target {tree} is not empty")
    _merged_usr(tree, lock.arch)
    essential = essential_set(lock)
    if not essential:
        raise ComposeError("the lock has no Essential packages: cannot bootstrap dpkg")
    extract([Path(packages[p.name]) for p in essential], tree, parallel=parallel)
    _prepare_dpkg(tree)
    dpkg = _Dpkg(tree, eatmydata=eatmydata, timeout=timeout, events=events, epoch=epoch)
    if pre_install is None:
        dpkg.install(files)
        return
    first = {p.name for p in essential}
    dpkg.install([f for p, f in zip(lock.packages, files, strict=True) if p.name in first])
    pre_install(tree)
    rest = [f for p, f in zip(lock.packages, files, strict=True) if p.name not in first]
    if rest:
        dpkg.install(rest)


class _Dpkg:
    """One ``dpkg --unpack`` and one ``dpkg --configure -a`` of a list of packages in the
    sandbox, with policy-rc.d and the update-initramfs diversion around them."""

    def __init__(self, tree: Path, *, eatmydata: bool, timeout: float | None,
                 events: EventSink | None, epoch: int | None) -> None:
        self.tree = tree
        self.timeout = timeout
        self.events = events
        self.env: dict[str, str] = {"INITRD": "No", **epoch_env(resolve(epoch))}
        self.copies: list[tuple[Path, str]] = []
        eat = _eatmydata_library() if eatmydata else None
        if eat is not None:  # copied: a preloaded library cannot come from a noexec bind mount
            self.copies.append((eat, EATMYDATA_MOUNT))
            self.env["LD_PRELOAD"] = EATMYDATA_MOUNT

    def install(self, files: list[Path]) -> None:
        tree, env, copies, timeout, events = (self.tree, self.env, self.copies, self.timeout,
                                              self.events)
        binds, in_chroot = _bind_packages(files)
        _write_policy_rc_d(tree)
        try:
            unpack = (
                f"dpkg-divert --quiet --local --rename --divert "
                f"{UPDATE_INITRAMFS}{DIVERTED_SUFFIX} --add {UPDATE_INITRAMFS}\n"
                f"printf '#!/bin/sh\\n# imagecomposer: initramfs is built once, later\\n"
                f"exit 0\\n' > {UPDATE_INITRAMFS}\nchmod 755 {UPDATE_INITRAMFS}\n"
                "exec dpkg " + " ".join(DPKG_OPTIONS) + " --force-depends --unpack "
                + " ".join(shlex.quote(f) for f in in_chroot)
            )
            _dpkg_phase(tree, unpack, env, binds, copies, "unpack", timeout,
                        _counter(events, "unpacking", "Unpacking ", len(files)))
            _dpkg_phase(tree, "exec dpkg " + " ".join(DPKG_OPTIONS) + " --configure -a",
                        env, binds, copies, "configure", timeout,
                        _counter(events, "configuring", "Setting up ", len(files)))
        finally:
            with Root(tree) as root:
                root.remove(POLICY_RC_D)
        restore_update_initramfs(tree)
        _cleanup(tree)


def restore_update_initramfs(tree: Path) -> None:
    """Undo the diversion of update-initramfs (no-op if it is not diverted)."""
    diversions = "/var/lib/dpkg/diversions"
    with Root(tree) as root:
        if not root.is_file(diversions):
            return
        if UPDATE_INITRAMFS not in root.read_text(diversions).splitlines():
            return
        root.remove(UPDATE_INITRAMFS)
    run_in_chroot(tree, ["dpkg-divert", "--quiet", "--local", "--rename", "--divert",
                         UPDATE_INITRAMFS + DIVERTED_SUFFIX, "--remove", UPDATE_INITRAMFS],
                  what="dpkg-divert --remove update-initramfs")
    with Root(tree) as root:  # the package was not installed: nothing to rename back
        root.remove(UPDATE_INITRAMFS + DIVERTED_SUFFIX)


def extract(debs: list[Path], tree: Path, *, parallel: int = 1) -> None:
    """Extract the data of ``debs`` into ``tree``, keeping merged-/usr directory symlinks.

    Packages are extracted in parallel, ``parallel`` ``xargs`` slots (``--parallel``, at
    most one per CPU): decompressing xz data is what this step spends its time on, and
    Essential packages never share files. They do share directories, and which tar sets a
    shared directory's time last is a race: tar restores no times here (``--touch``), so
    nothing depends on it. (dpkg unpacks every package again right after, with the packaged
    file times.)
    """
    script = (
        'set -euo pipefail; T=$1; P=$2; shift 2\n'
        'printf "%s\\0" "$@" | xargs -0 -r -n 4 -P "$P" bash -c '
        '\'set -euo pipefail; T=$0; for deb; do dpkg-deb --fsys-tarfile "$deb" | '
        'tar -x --touch --keep-directory-symlink -C "$T" -f -; done\' "$T"'
    )
    runner.require("dpkg-deb", "dpkg")
    slots = max(1, min(parallel, os.cpu_count() or 1))
    runner.run(["bash", "-c", script, "extract", str(tree), str(slots), *map(str, debs)],
               what="extracting the Essential packages")


def _merged_usr(tree: Path, arch: str) -> None:
    for name in MERGED_USR.get(arch, ("bin", "sbin", "lib")):
        (tree / "usr" / name).mkdir(parents=True, exist_ok=True)
        (tree / name).symlink_to(f"usr/{name}")


def _prepare_dpkg(tree: Path) -> None:
    """dpkg's database directories, after the Essential packages were extracted (their
    content is not trusted to have no symlink here: everything goes through Root)."""
    with Root(tree) as root:
        for sub in ("info", "updates", "triggers", "alternatives", "parts"):
            if not root.is_dir(f"/var/lib/dpkg/{sub}"):
                root.mkdir(f"/var/lib/dpkg/{sub}")
        for name in ("status", "available"):
            if not root.is_file(f"/var/lib/dpkg/{name}"):
                root.write(f"/var/lib/dpkg/{name}", "")
        if not root.is_dir("/etc"):
            root.mkdir("/etc")


def _write_policy_rc_d(tree: Path) -> None:
    with Root(tree) as root:
        root.write(POLICY_RC_D, "#!/bin/sh\n# imagecomposer: no service starts while the "
                   "image is built\nexit 101\n", mode=0o755)


def _bind_packages(files: list[Path]) -> tuple[list[tuple[Path, str]], list[str]]:
    """Bind each directory holding packages (read-only, noexec) under /run in the sandbox;
    the packages' paths there."""
    dirs: dict[Path, str] = {}
    inside: list[str] = []
    for f in files:
        parent = f.resolve().parent
        if parent not in dirs:
            dirs[parent] = f"{PKG_MOUNT}/{len(dirs)}"
        inside.append(f"{dirs[parent]}/{f.name}")
    return [(d, target) for d, target in dirs.items()], inside


def _eatmydata_library() -> Path | None:
    for candidate in EATMYDATA_HOST:
        if candidate.is_file():
            return candidate
    log.info("libeatmydata not found on the host: dpkg will fsync (install 'eatmydata')")
    return None


ERRORS_HEADER = re.compile(r"^Errors were encountered while processing:\n((?:^ .*\n?)+)", re.M)
ERROR_PACKAGE = re.compile(r"error processing (?:package|archive) (\S+)")


def failed_packages(output: str) -> list[str]:
    """Names of the packages dpkg reports as failed in ``output``."""
    found: list[str] = []
    match = ERRORS_HEADER.search(output)
    names = match.group(1).split() if match else ERROR_PACKAGE.findall(output)
    for name in names:
        base = Path(name).name.split("_", 1)[0]
        if base not in found:
            found.append(base)
    return found


EXIT_STATUS = re.compile(r"returned error exit status (\d+)")


def failure_excerpt(output: str, names: list[str], context: int = 15) -> str:
    """The lines of ``output`` that explain each failed package: its own script output up to
    dpkg's error (the tail alone is mostly trigger noise printed after the failure)."""
    lines = output.splitlines()
    keep: list[str] = []
    for name in names:
        for i, line in enumerate(lines):
            if ERROR_PACKAGE.search(line) and re.search(rf"\b{re.escape(name)}\b", line):
                start = max(0, i - context)
                for j in range(i - 1, start - 1, -1):
                    if re.match(rf"(Setting up|Unpacking|Preparing to unpack) .*\b"
                                rf"{re.escape(name)}\b", lines[j]):
                        start = j
                        break
                keep += [*lines[start:i + 2], "..."]
                break
    return "\n".join(keep + lines[-5:])


def _counter(events: EventSink | None, what: str, prefix: str, total: int
             ) -> Callable[[str], None] | None:
    """An output line handler that turns dpkg's lines starting with ``prefix`` into
    :class:`Progress` events (None without ``events``)."""
    if events is None:
        return None
    done = 0

    def seen(line: str) -> None:
        nonlocal done
        if line.startswith(prefix):
            done += 1
            events(Progress(what, min(done, total), total, "packages"))

    return seen


def _dpkg_phase(tree: Path, script: str, env: Mapping[str, str],
                binds: list[tuple[Path, str]], copies: list[tuple[Path, str]], phase: str,
                timeout: float | None, progress: Callable[[str], None] | None = None) -> None:
    """Run one dpkg phase, reading its output as it comes (``progress`` sees each line);
    on failure the maintainer script's own output is cut out of the whole output."""
    lines: list[str] = []

    def seen(line: str) -> None:
        lines.append(line)
        if progress is not None:
            progress(line)

    try:
        run_in_chroot(tree, ["sh", "-c", f"set -e\n{script}"], env=env, binds=binds,
                      copies=copies, timeout=timeout, what=f"dpkg --{phase}", on_output=seen)
    except CommandError as exc:
        if exc.returncode is None:
            raise
        output = "\n".join(lines) + "\n"
        log.debug("dpkg --%s output:\n%s", phase, output)
        names = failed_packages(output)
        subject = ", ".join(names) if names else "(see the output)"
        status = EXIT_STATUS.search(output)
        code = int(status.group(1)) if status else exc.returncode
        raise ScriptFailed(
            f"Script returned non-zero exit code {code}: dpkg --{phase} failed in the "
            f"maintainer script of package {subject}", exc.argv, code,
            failure_excerpt(output, names) if names else exc.stderr_tail) from exc


def _cleanup(tree: Path) -> None:
    """Drop what installation leaves that must not be baked into every image."""
    normalize.remove_leftovers(tree, LEFTOVERS)
    with Root(tree) as root:
        for name in root.listdir("/etc/ssh") if root.is_dir("/etc/ssh") else ():
            if name.startswith("ssh_host_"):
                root.remove(f"/etc/ssh/{name}")
        if root.exists("/etc/machine-id", follow=False):
            root.write("/etc/machine-id", "", mode=0o444)

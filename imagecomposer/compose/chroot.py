"""Run commands inside an image tree: the compose sandbox.

Every command that runs in an image tree (spec scripts, ``dpkg --unpack``/``--configure`` and
the maintainer scripts they run, ``update-initramfs``, ``grub-mkimage``, ``locale-gen`` ...)
goes through :func:`run_in_chroot`, which runs ONE logged command line::

    unshare --mount --propagation private --pid --fork --kill-child --uts --ipc [--net] --
        sh -c SETUP imagecomposer-sandbox TREE
        PYTHON -I -S -B pivot_exec.py TREE CAPS K=V... -- ARGV...

In those new namespaces, SETUP (host tools, before anything of the image runs) binds the tree
onto itself, mounts a fresh ``/proc`` (its ``sys``, ``sysrq-trigger``, ``irq`` ... read-only),
a read-only ``/sys``, a tmpfs ``/dev`` holding only the character devices of :data:`DEVICES`
plus a private devpts and ``/dev/shm``, a tmpfs ``/run``, and under ``/run/imagecomposer`` a
tmpfs that receives COPIES of host files (spec scripts, libeatmydata) and is then made
read-only, with read-only ``nosuid,nodev,noexec`` bind mounts of host directories (package
files) on top. Then :mod:`imagecomposer.compose.pivot_exec` makes the tree the root with
``pivot_root`` and detaches the host's root (no host path is reachable any more), drops every
capability not in :data:`KEPT_CAPABILITIES` from the bounding, effective, permitted,
inheritable and ambient sets, sets ``no_new_privs`` and execs ``ARGV`` with a clean
environment. The command is PID 1 of its namespace: every daemon a maintainer script starts
dies with it, and ``unshare --kill-child`` kills it when the build dies.

Without ``CAP_SYS_ADMIN`` nothing can be mounted, unmounted or remounted, so the read-only
mounts stay read-only; without ``CAP_MKNOD`` no device node can be created; without
``CAP_SYS_CHROOT`` no chroot (escape or not); ``/proc/sys`` is read-only, so no sysctl of the
host changes. Why each capability is kept or dropped: :data:`KEPT_CAPABILITIES` and
docs/compose.md ("The sandbox").

All mounts live in the child's private mount namespace: the host never sees them and they
vanish with the process whatever happens (exception, Ctrl-C, SIGKILL), so nothing is ever
left to unmount and nothing can be removed through a forgotten mount point. The network
namespace is empty (only a down loopback) unless ``network=True``, which shares the host's.
"""

from __future__ import annotations

import logging
import os
import posixpath
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from imagecomposer import runner
from imagecomposer.compose import pivot_exec
from imagecomposer.errors import CommandError, ComposeError, PermissionDenied

log = logging.getLogger(__name__)

# The environment a command in the tree sees: nothing of the caller's leaks in.
BASE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "TERM": "dumb",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
}

# Character devices a package installation needs (name, major, minor, mode): mmdebstrap's set
# without /dev/console (5:1 is the HOST's console: a script could read or write its terminal).
DEVICES: tuple[tuple[str, int, int, str], ...] = (
    ("null", 1, 3, "666"),
    ("zero", 1, 5, "666"),
    ("full", 1, 7, "666"),
    ("random", 1, 8, "666"),
    ("urandom", 1, 9, "666"),
    ("tty", 5, 0, "666"),
)

# What dpkg, maintainer scripts and spec scripts keep (root acting on files it does not own,
# changing owners and modes, setuid/setgid bits, file capabilities, dropping privileges to a
# user, signalling its own daemons). Everything else is dropped, notably: sys_admin (mount,
# remount, pivot_root, setns, sethostname), sys_module, sys_rawio, sys_boot, sys_time,
# sys_ptrace, mknod, net_admin, net_raw, sys_chroot (nothing of the Debian set calls chroot,
# and there is nothing to chroot out of), dac_read_search (open_by_handle_at reaches any
# file of the tree's file system by inode), setpcap, bpf, perfmon, syslog, mac_*, audit_*,
# sys_nice, sys_resource, ipc_lock, linux_immutable, net_bind_service.
KEPT_CAPABILITIES: tuple[str, ...] = (
    "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setfcap",
)

RUN_DIR = "/run/imagecomposer"  # copies and binds live here, on a tmpfs of the namespace
HOSTNAME = "localhost"  # the UTS name in the sandbox: never the host's, the same on every host
# /proc entries that change the host's kernel (sysctls, SysRq, IRQ affinity, bus and driver
# settings): read-only in the sandbox. /proc/self stays writable.
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus", "fs", "acpi", "scsi", "asound",
                  "driver")
TREE_MOUNT_POINTS = ("proc", "sys", "dev", "run", "tmp")

_SETUP = r"""set -eu
T=$1; shift
for d in {mount_points}; do
  if [ -L "$T/$d" ] || {{ [ -e "$T/$d" ] && [ ! -d "$T/$d" ]; }}; then
    echo "imagecomposer sandbox: /$d in the image tree is not a directory" >&2; exit 125
  fi
  mkdir -p "$T/$d"
done
mount --bind "$T" "$T"
mount -t proc -o nosuid,nodev,noexec proc "$T/proc"
echo {hostname} > "$T/proc/sys/kernel/hostname"
echo '(none)' > "$T/proc/sys/kernel/domainname"
for p in {proc_read_only}; do
  if [ -e "$T/proc/$p" ]; then
    mount --bind "$T/proc/$p" "$T/proc/$p"
    mount -o remount,bind,ro,nosuid,nodev,noexec "$T/proc/$p"
  fi
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$T/sys"
mount -t tmpfs -o mode=755,nosuid,noexec,size=16m tmpfs "$T/dev"
{devices}
ln -s /proc/self/fd "$T/dev/fd"
ln -s /proc/self/fd/0 "$T/dev/stdin"
ln -s /proc/self/fd/1 "$T/dev/stdout"
ln -s /proc/self/fd/2 "$T/dev/stderr"
mkdir "$T/dev/pts" "$T/dev/shm"
mount -t devpts -o newinstance,ptmxmode=666,mode=620,nosuid,noexec devpts "$T/dev/pts"
ln -s pts/ptmx "$T/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$T/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$T/run"
mkdir "$T{run_dir}"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$T{run_dir}"
{copies}
mount -o remount,ro,nosuid,nodev "$T{run_dir}"
{binds}
exec "$@"
"""


def _devices_script() -> str:
    return "\n".join(f'mknod -m {mode} "$T/dev/{name}" c {major} {minor}'
                     for name, major, minor, mode in DEVICES)


def _target(target: str) -> str:
    """``target`` checked to be a normalized absolute path under :data:`RUN_DIR`."""
    if (not target.startswith(RUN_DIR + "/") or posixpath.normpath(target) != target
            or "\n" in target):
        raise ComposeError(f"sandbox path {target!r} is not a plain path under {RUN_DIR}/")
    return target


def setup_script(binds: Sequence[tuple[Path, str]] = (),
                 copies: Sequence[tuple[Path, str]] = ()) -> str:
    """The shell script the namespaced child runs before ``pivot_exec`` (exposed for tests).

    ``copies`` are (host file, path in the tree) pairs copied into the read-only tmpfs at
    :data:`RUN_DIR`; ``binds`` are (host directory, path in the tree) pairs mounted read-only,
    ``nosuid,nodev,noexec``. Every target must be under :data:`RUN_DIR`.
    """
    copy_lines = []
    for source, target in copies:
        inside = _quote(_target(target))
        copy_lines.append(f'mkdir -p "$(dirname "$T"{inside})"')
        copy_lines.append(f'cp -- {_quote(str(source))} "$T"{inside}')
    bind_lines = []
    for source, target in binds:
        inside = _quote(_target(target))
        copy_lines.append(f'mkdir -p "$T"{inside}')  # the mount point, before the ro remount
        bind_lines.append(f'mount --bind {_quote(str(source))} "$T"{inside}')
        bind_lines.append(f'mount -o remount,bind,ro,nosuid,nodev,noexec "$T"{inside}')
    return _SETUP.format(
        mount_points=" ".join(TREE_MOUNT_POINTS), hostname=HOSTNAME,
        proc_read_only=" ".join(PROC_READ_ONLY), devices=_devices_script(), run_dir=RUN_DIR,
        copies="\n".join(copy_lines), binds="\n".join(bind_lines))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment of a command in the tree: :data:`BASE_ENV` plus ``env``."""
    full_env = {**BASE_ENV, **(env or {})}
    if "SOURCE_DATE_EPOCH" in os.environ:  # reproducible builds: tools in the image honour it
        full_env.setdefault("SOURCE_DATE_EPOCH", os.environ["SOURCE_DATE_EPOCH"])
    return full_env


def chroot_argv(tree: Path, argv: Sequence[str], env: Mapping[str, str] | None = None,
                binds: Sequence[tuple[Path, str]] = (), *, network: bool = False,
                copies: Sequence[tuple[Path, str]] = ()) -> list[str]:
    """The host command line that runs ``argv`` in the sandbox on ``tree`` (for tests, logs)."""
    unshare = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
               "--kill-child", "--uts", "--ipc"]
    if not network:
        unshare.append("--net")
    full_env = environment(env)
    helper = [sys.executable or "python3", "-I", "-S", "-B", pivot_exec.__file__, str(tree),
              ",".join(KEPT_CAPABILITIES), *(f"{k}={v}" for k, v in sorted(full_env.items())),
              "--", *argv]
    return [*unshare, "--", "sh", "-c", setup_script(binds, copies), "imagecomposer-sandbox",
            str(tree), *helper]


def run_in_chroot(
    tree: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    binds: Sequence[tuple[Path, str]] = (),
    copies: Sequence[tuple[Path, str]] = (),
    network: bool = False,
    capture: bool = False,
    check: bool = True,
    timeout: float | None = None,
    error: type[CommandError] = CommandError,
    what: str | None = None,
) -> runner.Completed:
    """Run ``argv`` in the sandbox on ``tree`` with a clean environment plus ``env``.

    ``binds`` (host directories, mounted read-only) and ``copies`` (host files) appear under
    :data:`RUN_DIR` for the duration of the command only; nothing is left in the tree.
    ``network`` shares the host's network namespace (default: none). Needs root.
    """
    if os.geteuid() != 0:
        raise PermissionDenied(
            f"Permission denied: running {argv[0]} inside the image tree needs root "
            "(namespaces, pivot_root)", list(argv))
    if not tree.is_dir():
        raise CommandError(f"image tree {tree} does not exist", list(argv))
    command = chroot_argv(tree, argv, env, binds, network=network, copies=copies)
    return runner.run(command, capture=capture, check=check, timeout=timeout, error=error,
                      what=what or " ".join(argv[:3]))

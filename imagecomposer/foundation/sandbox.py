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
(the host's nodes, bound read-only) plus a private devpts and ``/dev/shm``, a tmpfs ``/run``,
and under ``/run/imagecomposer`` a tmpfs that receives COPIES of host files (spec scripts,
libeatmydata) and is then made read-only, with read-only ``nosuid,nodev,noexec`` bind mounts
of host directories (package files) on top. Then :mod:`imagecomposer.foundation.pivot_exec`
names the host ``localhost``, makes the tree the root with ``pivot_root`` and detaches the
host's root (no host path is reachable any more), drops every capability not in
:data:`KEPT_CAPABILITIES` from the bounding, effective, permitted, inheritable and ambient
sets, sets ``no_new_privs`` and execs ``ARGV`` with a clean
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

The same command line works as root and as root of a user namespace (a rootless build, see
:mod:`imagecomposer.foundation.userns`): nothing in it needs more than a namespace's owner
may do (no mknod, no sysctl write, no sysfs of a network namespace we do not own).
"""

from __future__ import annotations

import logging
import os
import posixpath
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from imagecomposer.foundation import pivot_exec, runner
from imagecomposer.foundation.errors import CommandError, ComposeError, PermissionDenied

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

# Character devices a package installation needs: mmdebstrap's set without /dev/console (5:1
# is the HOST's console: a script could read or write its terminal). Each is the host's own
# node bound read-only (nothing in the sandbox can chmod, chown or replace it; a read-only
# mount still reads and writes the device), not a mknod: a user namespace (rootless builds)
# cannot make device nodes, and one rule for both keeps the tested path the one that runs.
DEVICES: tuple[str, ...] = ("null", "zero", "full", "random", "urandom", "tty")

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
HOSTNAME = pivot_exec.HOSTNAME  # the UTS name in the sandbox: never the host's, the same everywhere
# /proc entries that change the host's kernel (sysctls, SysRq, IRQ affinity, bus and driver
# settings): read-only in the sandbox. /proc/self stays writable.
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus", "fs", "acpi", "scsi", "asound",
                  "driver")
TREE_MOUNT_POINTS = ("proc", "sys", "dev", "run", "tmp")
# What a host tool run by host_tool_argv sees of the host besides /usr: the top-level links
# (or directories) of a merged-/usr system, and the /etc files the dynamic loader and rpm read.
HOST_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
HOST_ETC = ("ld.so.cache", "rpm", "rpmrc")
HOST_RESERVED = ("usr", "etc", "proc", "dev", "sys", *HOST_DIRS)

_CHECK = r"""set -eu
T=$1; shift
for d in {mount_points}; do
  if [ -L "$T/$d" ] || {{ [ -e "$T/$d" ] && [ ! -d "$T/$d" ]; }}; then
    echo "imagecomposer sandbox: /$d in the image tree is not a directory" >&2; exit 125
  fi
  mkdir -p "$T/$d"
done
"""
# The new root is the tree itself ($I is where the image tree is mounted).
_TREE_ROOT = r"""mount --bind "$T" "$T"
I=$T
"""
# The new root is a tmpfs ($R, on the tree's /run: any directory would do, this one exists
# and is checked) holding the host's /usr read-only and the tree at its own path.
_HOST_ROOT = r"""R=$T/run
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R"
mkdir -p "$R$T"
mount --bind "$T" "$R$T"
I=$R$T
"""
_IMAGE = r"""mount -t proc -o nosuid,nodev,noexec proc "$I/proc"
for p in {proc_read_only}; do
  if [ -e "$I/proc/$p" ]; then
    mount --bind "$I/proc/$p" "$I/proc/$p"
    mount -o remount,bind,ro,nosuid,nodev,noexec "$I/proc/$p"
  fi
done
{sysfs}mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$I/sys"
mount -t tmpfs -o mode=755,nosuid,noexec,size=16m tmpfs "$I/dev"
for d in {devices}; do
  [ -c "/dev/$d" ] || {{ echo "imagecomposer sandbox: the host has no /dev/$d" >&2; exit 125; }}
  touch "$I/dev/$d"
  mount --bind "/dev/$d" "$I/dev/$d"
  mount -o remount,bind,ro,nosuid,noexec "$I/dev/$d"
done
ln -s /proc/self/fd "$I/dev/fd"
ln -s /proc/self/fd/0 "$I/dev/stdin"
ln -s /proc/self/fd/1 "$I/dev/stdout"
ln -s /proc/self/fd/2 "$I/dev/stderr"
mkdir "$I/dev/pts" "$I/dev/shm"
mount -t devpts -o newinstance,ptmxmode=666,mode=620,nosuid,noexec devpts "$I/dev/pts"
ln -s pts/ptmx "$I/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$I/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$I/run"
mkdir "$I{run_dir}"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$I{run_dir}"
{copies}
mount -o remount,ro,nosuid,nodev "$I{run_dir}"
{binds}
"""
# The host side of a host-tool root: /usr and the top-level links or directories into it,
# the few /etc files a dynamically linked tool reads, the image's /proc and /dev, a /tmp.
_HOST_VIEW = r"""mkdir "$R/usr"
mount --bind /usr "$R/usr"
mount -o remount,bind,ro,nosuid,nodev "$R/usr"
for d in {host_dirs}; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d"
  elif [ -d "/$d" ]; then
    mkdir "$R/$d"; mount --bind "/$d" "$R/$d"; mount -o remount,bind,ro,nosuid,nodev "$R/$d"
  fi
done
mkdir "$R/etc" "$R/proc" "$R/dev"
mkdir -p "$R/tmp" && chmod 1777 "$R/tmp"
for f in {host_etc}; do
  if [ -e "/etc/$f" ]; then cp -a "/etc/$f" "$R/etc/"; fi
done
mount --rbind "$I/proc" "$R/proc"
mount --rbind "$I/dev" "$R/dev"
{host_paths}
mount -o remount,ro,nosuid,nodev "$R"
"""


def _target(target: str) -> str:
    """``target`` checked to be a normalized absolute path under :data:`RUN_DIR`."""
    if (not target.startswith(RUN_DIR + "/") or posixpath.normpath(target) != target
            or "\n" in target):
        raise ComposeError(f"sandbox path {target!r} is not a plain path under {RUN_DIR}/")
    return target


def setup_script(binds: Sequence[tuple[Path, str]] = (),
                 copies: Sequence[tuple[Path, str]] = (), *,
                 host_paths: Sequence[Path] | None = None, network: bool = False) -> str:
    """The shell script the namespaced child runs before ``pivot_exec`` (exposed for tests).

    ``copies`` are (host file, path in the tree) pairs copied into the read-only tmpfs at
    :data:`RUN_DIR`; ``binds`` are (host directory, path in the tree) pairs mounted read-only,
    ``nosuid,nodev,noexec``. Every target must be under :data:`RUN_DIR`. With ``host_paths``
    (a host tool acting on the tree, see :func:`host_tool_argv`) the root is a tmpfs with the
    host's ``/usr``, the tree at its own path and ``host_paths`` read-only at theirs.
    ``network``: the command shares the host's network namespace; a sysfs can only be
    mounted by a namespace's owner, so ``/sys`` is then mounted from an empty network
    namespace of the sandbox's own (in a user namespace the host's is not ours to mount).
    """
    copy_lines = []
    for source, target in copies:
        inside = _quote(_target(target))
        copy_lines.append(f'mkdir -p "$(dirname "$I"{inside})"')
        copy_lines.append(f'cp -- {_quote(str(source))} "$I"{inside}')
    bind_lines = []
    for source, target in binds:
        inside = _quote(_target(target))
        copy_lines.append(f'mkdir -p "$I"{inside}')  # the mount point, before the ro remount
        bind_lines += _read_only_bind(_quote(str(source)), f'"$I"{inside}')
    script = _CHECK.format(mount_points=" ".join(TREE_MOUNT_POINTS))
    script += _TREE_ROOT if host_paths is None else _HOST_ROOT
    script += _IMAGE.format(
        proc_read_only=" ".join(PROC_READ_ONLY), devices=" ".join(DEVICES),
        sysfs="unshare --net " if network else "",
        run_dir=RUN_DIR, copies="\n".join(copy_lines), binds="\n".join(bind_lines))
    if host_paths is not None:
        host_lines = []
        for path in host_paths:
            if not path.is_absolute() or "\n" in str(path):
                raise ComposeError(f"host path {path} for the sandbox is not absolute")
            inside = _quote(str(path))
            if path.is_dir():
                host_lines.append(f'mkdir -p "$R"{inside}')
            else:
                host_lines.append(f'mkdir -p "$(dirname "$R"{inside})"')
                host_lines.append(f'touch "$R"{inside}')
            host_lines += _read_only_bind(inside, f'"$R"{inside}')
        script += _HOST_VIEW.format(host_dirs=" ".join(HOST_DIRS), host_etc=" ".join(HOST_ETC),
                                    host_paths="\n".join(host_lines))
    return script + 'exec "$@"\n'


def _read_only_bind(source: str, target: str) -> list[str]:
    return [f"mount --bind {source} {target}",
            f"mount -o remount,bind,ro,nosuid,nodev,noexec {target}"]


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
    tree = tree.absolute()
    return _sandbox_argv(tree, tree, setup_script(binds, copies, network=network), argv, env,
                         KEPT_CAPABILITIES, network=network)


def host_tool_argv(tree: Path, argv: Sequence[str], *, host_paths: Sequence[Path] = (),
                   env: Mapping[str, str] | None = None,
                   capabilities: Sequence[str] = ()) -> list[str]:
    """The command line that runs a HOST tool acting on ``tree`` (``rpm --root TREE``) in the
    sandbox: the root is a read-only tmpfs holding the host's ``/usr`` (read-only), the tree
    (with the sandbox's ``/proc``, ``/dev`` and ``/run``) at its own path, and ``host_paths``
    read-only at theirs. Nothing else of the host is there, so a script the tool runs in the
    tree finds no host file to read or write, even through the tool's own root, working
    directory or open files. ``capabilities`` are kept on top of :data:`KEPT_CAPABILITIES`
    (rpm chroots into the tree: ``sys_chroot``). No network.
    """
    for path in (tree, *host_paths):
        if not path.is_absolute():
            raise ComposeError(f"{path} for the sandbox is not an absolute path")
        if path.parts[1:2] and path.parts[1] in HOST_RESERVED:
            raise ComposeError(f"{path} cannot be given to a host tool in the sandbox: "
                               f"/{path.parts[1]} is the host's there")
    return _sandbox_argv(tree, tree / "run", setup_script(host_paths=host_paths), argv, env,
                         (*KEPT_CAPABILITIES, *capabilities), network=False)


def _sandbox_argv(tree: Path, root: Path, script: str, argv: Sequence[str],
                  env: Mapping[str, str] | None, capabilities: Sequence[str], *,
                  network: bool) -> list[str]:
    unshare = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
               "--kill-child", "--uts", "--ipc"]
    if not network:
        unshare.append("--net")
    pivot_exec.mask(list(capabilities))  # an unknown name fails here, not in the sandbox
    helper = [sys.executable or "python3", "-I", "-S", "-B", pivot_exec.__file__, str(root),
              ",".join(dict.fromkeys(capabilities)),
              *(f"{k}={v}" for k, v in sorted(environment(env).items())), "--", *argv]
    log.debug("sandbox setup for %s:\n%s", " ".join(argv[:3]), script)
    return [*unshare, "--", "sh", "-c", script, "imagecomposer-sandbox", str(tree), *helper]


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
    on_output: Callable[[str], None] | None = None,
) -> runner.Completed:
    """Run ``argv`` in the sandbox on ``tree`` with a clean environment plus ``env``
    (``on_output``: each output line as it comes, see :func:`runner.run`).

    ``binds`` (host directories, mounted read-only) and ``copies`` (host files) appear under
    :data:`RUN_DIR` for the duration of the command only; nothing is left in the tree.
    ``network`` shares the host's network namespace (default: none). Needs root, or root of
    a user namespace (:func:`imagecomposer.foundation.userns.become_root`).
    """
    if os.geteuid() != 0:
        raise PermissionDenied(
            f"Permission denied: running {argv[0]} inside the image tree needs root, or root "
            "of a user namespace (imagecomposer.foundation.userns.become_root)", list(argv))
    if not tree.is_dir():
        raise CommandError(f"image tree {tree} does not exist", list(argv))
    command = chroot_argv(tree, argv, env, binds, network=network, copies=copies)
    return runner.run(command, capture=capture, check=check, timeout=timeout, error=error,
                      what=what or " ".join(argv[:3]), on_output=on_output)

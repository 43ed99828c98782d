"""Run commands inside an image tree: chroot in private mount, PID, network and UTS namespaces.

Why namespaces instead of mounting and unmounting: everything the chroot needs (``/proc``,
``/sys``, a minimal ``/dev``, ``/run``, ``/tmp``) is mounted by a child ``unshare`` process in
its own mount namespace with private propagation, so the host never sees these mounts and they
vanish when that process exits, whatever happens (exception, Ctrl-C, SIGKILL). Nothing is ever
left to unmount, so nothing can be removed through a forgotten mount point. The PID namespace
(``--kill-child``) takes every daemon a maintainer script might start with it; the empty
network namespace keeps package scripts offline; the UTS namespace keeps ``hostname`` calls
from renaming the host.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from imagecomposer import runner
from imagecomposer.errors import CommandError, PermissionDenied

# The environment a chroot command sees: nothing of the caller's leaks in.
BASE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "TERM": "dumb",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
}

# Device nodes a package installation needs (major, minor, mode): what mmdebstrap creates.
DEVICES: tuple[tuple[str, int, int, str], ...] = (
    ("null", 1, 3, "666"),
    ("zero", 1, 5, "666"),
    ("full", 1, 7, "666"),
    ("random", 1, 8, "666"),
    ("urandom", 1, 9, "666"),
    ("tty", 5, 0, "666"),
    ("console", 5, 1, "600"),
)

# $1 is the tree, then the host command to exec (env -i ... chroot TREE argv).
_SETUP = r"""
set -eu
T=$1; shift
mkdir -p "$T/proc" "$T/sys" "$T/dev" "$T/run" "$T/tmp"
mount -t proc -o nosuid,nodev,noexec proc "$T/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$T/sys"
mount -t tmpfs -o mode=755,nosuid,size=16m tmpfs "$T/dev"
{devices}
ln -s /proc/self/fd "$T/dev/fd"
ln -s /proc/self/fd/0 "$T/dev/stdin"
ln -s /proc/self/fd/1 "$T/dev/stdout"
ln -s /proc/self/fd/2 "$T/dev/stderr"
mkdir "$T/dev/pts" "$T/dev/shm"
mount -t devpts -o newinstance,ptmxmode=666,mode=620 devpts "$T/dev/pts"
ln -s pts/ptmx "$T/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$T/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$T/run"
{binds}
exec "$@"
"""


def _devices_script() -> str:
    lines = []
    for name, major, minor, mode in DEVICES:
        kind = "c"
        lines.append(f'mknod -m {mode} "$T/dev/{name}" {kind} {major} {minor}')
    return "\n".join(lines)


def setup_script(binds: Sequence[tuple[Path, str]] = ()) -> str:
    """The shell script the namespaced child runs before ``exec chroot`` (exposed for tests)."""
    bind_lines = []
    for source, target in binds:
        if source.is_dir():
            bind_lines.append(f'mkdir -p "$T{target}"')
        else:
            bind_lines.append(f'mkdir -p "$(dirname "$T{target}")" && touch "$T{target}"')
        bind_lines.append(f'mount --bind {_quote(str(source))} "$T{target}"')
        bind_lines.append(f'mount -o remount,bind,ro "$T{target}"')
    return _SETUP.format(devices=_devices_script(), binds="\n".join(bind_lines))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def chroot_argv(tree: Path, argv: Sequence[str], env: Mapping[str, str] | None = None,
                binds: Sequence[tuple[Path, str]] = (), *, network: bool = False) -> list[str]:
    """The host command line that runs ``argv`` inside ``tree`` (exposed for tests and logs)."""
    full_env = {**BASE_ENV, **(env or {})}
    if "SOURCE_DATE_EPOCH" in os.environ:  # reproducible builds: tools in the image honour it
        full_env.setdefault("SOURCE_DATE_EPOCH", os.environ["SOURCE_DATE_EPOCH"])
    # LD_PRELOAD names a library inside the tree: set it only after chroot, or the host's
    # chroot binary would complain that it cannot preload it.
    preload = full_env.pop("LD_PRELOAD", None)
    inner = ["/usr/bin/env", f"LD_PRELOAD={preload}"] if preload else []
    unshare = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
               "--kill-child", "--uts", "--ipc"]
    if not network:
        unshare.append("--net")
    return [
        *unshare, "--", "sh", "-c", setup_script(binds), "imagecomposer-chroot", str(tree),
        "env", "-i", *(f"{k}={v}" for k, v in sorted(full_env.items())), "chroot", str(tree),
        *inner, *argv,
    ]


def run_in_chroot(
    tree: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    binds: Sequence[tuple[Path, str]] = (),
    network: bool = False,
    capture: bool = False,
    check: bool = True,
    timeout: float | None = None,
    error: type[CommandError] = CommandError,
    what: str | None = None,
) -> runner.Completed:
    """Run ``argv`` inside ``tree`` with a clean environment plus ``env``.

    ``binds`` are (host path, absolute path in the tree) pairs mounted read-only for the
    duration of the command only. Put their targets under ``/run`` (a tmpfs of the namespace)
    so that not even an empty mount point is left in the tree. Needs root (mount namespaces,
    chroot, mknod).
    """
    if os.geteuid() != 0:
        raise PermissionDenied(
            f"Permission denied: running {argv[0]} inside the image tree needs root "
            "(chroot and mount namespaces)", list(argv))
    if not tree.is_dir():
        raise CommandError(f"image tree {tree} does not exist", list(argv))
    return runner.run(chroot_argv(tree, argv, env, binds, network=network), capture=capture,
                      check=check, timeout=timeout, error=error,
                      what=what or " ".join(argv[:3]))

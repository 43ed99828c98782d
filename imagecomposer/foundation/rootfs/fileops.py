"""File operations on directory descriptors, for :class:`imagecomposer.foundation.rootfs.Root`:
each acts
on a name inside an already resolved directory and never follows a symlink at that name."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
from collections.abc import Callable
from pathlib import Path

TMP_PREFIX = ".imagecomposer-tmp-"

_tmp_counter = itertools.count()


def host_of(fd: int) -> Path:
    """Where an open file is on the host (for messages and return values only)."""
    return Path(f"/proc/self/fd/{fd}").readlink()


def copy_fd(src: int, dst: int) -> None:
    offset = 0
    while True:
        try:
            sent = os.sendfile(dst, src, offset, 1 << 30)
        except OSError as exc:
            if offset or exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
            while chunk := os.read(src, 1 << 20):
                os.write(dst, chunk)
            return
        if sent == 0:
            return
        offset += sent


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def parents_path(parts: list[str]) -> str:
    return "/".join(parts) or "."


def tmp_name() -> str:
    return f"{TMP_PREFIX}{os.getpid()}-{next(_tmp_counter)}"


def replace_file(parent: int, name: str, fill: Callable[[int], None], mode: int,
             uid: int | None, gid: int | None,
             times: tuple[int, int] | None = None) -> None:
    """Create a temporary file in ``parent``, fill it, set owner, mode (and times), rename
    it over ``name``."""
    tmp = tmp_name()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=parent)
    try:
        try:
            fill(fd)
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(fd, mode)  # after chown, which clears set-id bits
            if times is not None:
                os.utime(fd, ns=times)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=parent)
        raise


def replace_symlink(parent: int, name: str, target: str, uid: int | None,
                     gid: int | None) -> None:
    tmp = tmp_name()
    os.symlink(target, tmp, dir_fd=parent)
    try:
        if uid is not None or gid is not None:
            os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid,
                     dir_fd=parent, follow_symlinks=False)
        os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=parent)
        raise


def set_owner_mode(parent: int, name: str, mode: int | None, uid: int | None,
                    gid: int | None) -> None:
    """chown then chmod ``name`` in ``parent`` without following it; a symlink is refused
    for chmod (its mode means nothing, its target's must not change through it)."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode) and mode is not None:
            raise OSError(errno.ELOOP, "is a symlink: its target's mode is not changed")
        if uid is not None or gid is not None:
            os.chown(name, -1 if uid is None else uid, -1 if gid is None else gid,
                     dir_fd=parent, follow_symlinks=False)
        if mode is not None:
            # the O_PATH descriptor pins the inode found without following: chmod it
            Path(f"/proc/self/fd/{fd}").chmod(mode)
    finally:
        os.close(fd)


def fd_owner_mode(fd: int, mode: int | None, uid: int | None, gid: int | None) -> None:
    """chown/chmod the inode an O_PATH descriptor holds (resolved inside the tree)."""
    proc = f"/proc/self/fd/{fd}"
    if uid is not None or gid is not None:
        os.chown(proc, -1 if uid is None else uid, -1 if gid is None else gid)
    if mode is not None:
        Path(proc).chmod(mode)

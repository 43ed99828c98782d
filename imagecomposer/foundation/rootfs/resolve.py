"""Path resolution inside a directory tree: openat2(2) ``RESOLVE_IN_ROOT``, or the same walk
done by hand where the kernel has no openat2 (``ENOSYS``). See
:mod:`imagecomposer.foundation.rootfs`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
from pathlib import PurePosixPath

# openat2(2) has the same number on every architecture using the generic syscall table.
SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437}.get(platform.machine())
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
MAX_SYMLINKS = 40  # the kernel's limit
O_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
ImagePath = str | PurePosixPath


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
# False once openat2 answered ENOSYS: the walk is used from then on.
_use_openat2 = SYS_OPENAT2 is not None


def openat2(dirfd: int, path: str, flags: int, mode: int = 0,
            resolve: int = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) -> int:
    """The raw ``openat2(2)`` system call; raises :class:`OSError` (``ENOSYS`` without it)."""
    if SYS_OPENAT2 is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), path)
    how = _OpenHow(flags, mode, resolve)
    fd = int(_syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd),
                      ctypes.c_char_p(os.fsencode(path)), ctypes.byref(how),
                      ctypes.c_size_t(ctypes.sizeof(how))))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def parts_of(path: ImagePath) -> list[str]:
    return [p for p in str(path).split("/") if p not in ("", ".")]


def _walk(root_fd: int, parts: list[str], flags: int, mode: int, follow: bool) -> int:
    """openat2(RESOLVE_IN_ROOT) done by hand: one ``O_PATH | O_NOFOLLOW`` component at a
    time, symlink targets resolved against ``root_fd``, ``..`` stopping there."""
    stack: list[int] = []  # owned fds of the directories below the root
    todo = list(parts)
    hops = 0
    try:
        while todo:
            name = todo.pop(0)
            cur = stack[-1] if stack else root_fd
            if name == "..":
                if stack:
                    os.close(stack.pop())
                continue
            last = not todo
            if last and not follow:
                return os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=cur)
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except FileNotFoundError:
                if last and flags & os.O_CREAT:
                    return os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=cur)
                raise
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink("", dir_fd=fd)
                finally:
                    os.close(fd)
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name)
                if target.startswith("/"):
                    while stack:
                        os.close(stack.pop())
                todo = parts_of(target) + todo
                continue
            if not last:
                stack.append(fd)
                continue
            if flags & ~(os.O_CLOEXEC | os.O_NOFOLLOW) == os.O_PATH:
                return fd
            os.close(fd)
            opened = os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=cur)
            again = os.fstat(opened)
            if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
                os.close(opened)  # swapped while we looked: never act on the new object
                raise OSError(errno.EAGAIN, "path changed during resolution", name)
            return opened
        return os.open(".", flags, mode, dir_fd=stack[-1] if stack else root_fd)
    finally:
        for fd in stack:
            os.close(fd)


def open_in_root(root_fd: int, path: ImagePath, flags: int, mode: int = 0, *,
                 follow: bool = True) -> int:
    """Open ``path`` as if ``root_fd`` were ``/``: openat2 when the kernel has it, else the
    equivalent walk. ``follow=False`` adds ``O_NOFOLLOW`` for the final component."""
    global _use_openat2
    flags |= os.O_CLOEXEC
    if not follow:
        flags |= os.O_NOFOLLOW
    parts = parts_of(path)
    if _use_openat2:
        for _ in range(8):
            try:
                return openat2(root_fd, "/".join(parts) or ".", flags, mode)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:  # a rename raced the lookup: try again
                    continue
                if exc.errno != errno.ENOSYS:
                    raise
                _use_openat2 = False
                break
        else:
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), str(path))
    return _walk(root_fd, parts, flags, mode, follow)

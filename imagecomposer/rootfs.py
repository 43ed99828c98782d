"""A directory tree treated as a filesystem root: nothing read or written through it escapes.

An image tree holds symlinks the build does not control (``/etc/systemd/system/sshd.service
-> /lib/systemd/system/ssh.service``, or whatever a package or a script planted). On the
host such an absolute link points at the host's own files, so a plain ``open(tree / path)``
can write onto the host. :class:`Root` resolves every image path the way the kernel would if
the process were chrooted into the tree, and acts only through directory file descriptors:

- Resolution is Linux ``openat2(2)`` with ``RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS``: ``/``
  and ``..`` stop at the tree's root, absolute symlink targets start there, ``/proc`` magic
  links are refused. Where the kernel has no openat2 (``ENOSYS``: before 5.6, or a seccomp
  filter) an equivalent walk opens one component at a time with ``O_PATH | O_NOFOLLOW`` and
  resolves each symlink's text inside the tree itself (magic links are read as text, so they
  never leave the tree either).
- The *parent* of a path is resolved that way, then the final component is acted on with
  ``dir_fd=`` and never followed: a file write creates a temporary file in the resolved
  parent (``O_CREAT | O_EXCL | O_NOFOLLOW``) and renames it over the name, so a symlink
  there is *replaced*, never written through; ``chown`` is ``lchown``; ``chmod`` refuses a
  symlink; reads follow symlinks, inside the tree.
- :meth:`Root.copy_tree_in` walks the host source with ``O_NOFOLLOW`` too: a symlink in the
  source is copied as a symlink (the image's link, resolved in the image), never followed.

Every failure is an :class:`~imagecomposer.errors.ImagePathError` naming the image path.
:func:`allowed_source` is the rule for host files a spec copies in: they must lie, after
resolving symlinks, inside one of the allowed directories (the spec's directory).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import itertools
import os
import platform
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import BinaryIO

from imagecomposer.errors import ImagePathError, SourceNotAllowed

# openat2(2) has the same number on every architecture using the generic syscall table.
SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437}.get(platform.machine())
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
MAX_SYMLINKS = 40  # the kernel's limit
O_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
TMP_PREFIX = ".imagecomposer-tmp-"
ImagePath = str | PurePosixPath

_tmp_counter = itertools.count()


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


def _parts(path: ImagePath) -> list[str]:
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
                todo = _parts(target) + todo
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
    parts = _parts(path)
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


def _host(fd: int) -> Path:
    """Where an open file is on the host (for messages and return values only)."""
    return Path(f"/proc/self/fd/{fd}").readlink()


def _copy_fd(src: int, dst: int) -> None:
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Root:
    """The directory ``path`` as the root of a filesystem (an image tree, an ESP tree).

    Image paths (``/etc/hostname``, ``etc/hostname``: the same) are resolved inside it; see
    the module documentation. Use as a context manager, or :meth:`close` it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.fd = os.open(self.path, O_DIR)
        except OSError as exc:
            raise ImagePathError(f"cannot open the tree {self.path}: {exc.strerror}",
                                 exc.errno) from exc

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Root:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Root({str(self.path)!r})"

    # --- resolution ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str, path: ImagePath) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            image = "/" + "/".join(_parts(path))
            raise ImagePathError(f"cannot {what} {image} in the tree {self.path}: "
                                 f"{exc.strerror or exc}", exc.errno) from exc

    def open(self, path: ImagePath, flags: int = os.O_PATH, mode: int = 0, *,
             follow: bool = True) -> int:
        """A raw file descriptor of ``path`` resolved inside the tree (the caller closes
        it); :class:`OSError` as the system call raises it."""
        return open_in_root(self.fd, path, flags, mode, follow=follow)

    @contextlib.contextmanager
    def _fd(self, path: ImagePath, flags: int = os.O_PATH, *,
            follow: bool = True) -> Iterator[int]:
        fd = self.open(path, flags, follow=follow)
        try:
            yield fd
        finally:
            os.close(fd)

    def _split(self, path: ImagePath) -> tuple[list[str], str]:
        parts = _parts(path)
        if not parts or parts[-1] == "..":
            raise ImagePathError(f"image path {str(path)!r} names no file in {self.path}")
        return parts[:-1], parts[-1]

    @contextlib.contextmanager
    def _parent(self, path: ImagePath, *, create: bool) -> Iterator[tuple[int, str]]:
        """(fd of the resolved parent directory, final name); parents made when asked."""
        parents, name = self._split(path)
        fd = self._makedirs(parents) if create else self.open(parents_path(parents), O_DIR)
        try:
            yield fd, name
        finally:
            os.close(fd)

    def _makedirs(self, parts: list[str], hops: int = 0) -> int:
        """``mkdir -p`` inside the tree (new directories 0755, owned by us); the O_PATH fd
        of the directory. A dangling symlink on the way is followed inside the tree and
        its target made, as the old chroot-style resolution did (``/var/lock ->
        /run/lock``)."""
        try:
            return self.open(parents_path(parts), O_DIR)
        except FileNotFoundError:
            if not parts or parts[-1] == "..":
                raise
        parent = self._makedirs(parts[:-1], hops)
        try:
            try:
                os.mkdir(parts[-1], 0o700, dir_fd=parent)
            except FileExistsError:
                st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    if hops >= MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), parts[-1]) from None
                    target = os.readlink(parts[-1], dir_fd=parent)
                    base = [] if target.startswith("/") else parts[:-1]
                    return self._makedirs(base + _parts(target), hops + 1)
            else:
                _set_owner_mode(parent, parts[-1], 0o755, None, None)
        finally:
            os.close(parent)
        return self.open(parents_path(parts), O_DIR)

    # --- queries ---------------------------------------------------------------------------

    def stat(self, path: ImagePath, *, follow: bool = True) -> os.stat_result:
        with self._errors("stat", path), self._fd(path, follow=follow) as fd:
            return os.fstat(fd)

    def lstat(self, path: ImagePath) -> os.stat_result:
        return self.stat(path, follow=False)

    def _mode(self, path: ImagePath, follow: bool) -> int | None:
        try:
            with self._fd(path, follow=follow) as fd:
                return os.fstat(fd).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EXDEV):
                return None  # a link loop, or a magic link: nothing usable there
            raise ImagePathError(f"cannot look up {path} in the tree {self.path}: "
                                 f"{exc.strerror}", exc.errno) from exc

    def exists(self, path: ImagePath, *, follow: bool = True) -> bool:
        return self._mode(path, follow) is not None

    def is_file(self, path: ImagePath) -> bool:
        mode = self._mode(path, True)
        return mode is not None and stat.S_ISREG(mode)

    def is_dir(self, path: ImagePath) -> bool:
        mode = self._mode(path, True)
        return mode is not None and stat.S_ISDIR(mode)

    def is_symlink(self, path: ImagePath) -> bool:
        mode = self._mode(path, False)
        return mode is not None and stat.S_ISLNK(mode)

    def readlink(self, path: ImagePath) -> str:
        with self._errors("read the link", path), self._fd(path, follow=False) as fd:
            return os.readlink("", dir_fd=fd)

    def listdir(self, path: ImagePath) -> list[str]:
        """The names in the directory ``path`` (sorted)."""
        with self._errors("list", path), \
                self._fd(path, os.O_RDONLY | os.O_DIRECTORY) as fd:
            return sorted(os.listdir(fd))  # noqa: PTH208 (a descriptor, not a path)

    def host_path(self, path: ImagePath, *, follow: bool = True) -> Path:
        """Where ``path`` resolves to on the host, for a host tool that only reads it.

        The answer can be stale by the time it is used: never write through it."""
        with self._errors("resolve", path), self._fd(path, follow=follow) as fd:
            return _host(fd)

    def open_read(self, path: ImagePath) -> BinaryIO:
        """A regular file of the tree opened for reading (symlinks followed in the tree)."""
        with self._errors("read", path), self._fd(path) as fd:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            # reopen the very inode found: opening a device or FIFO could block or act
            opened = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        return os.fdopen(opened, "rb")

    def read_bytes(self, path: ImagePath) -> bytes:
        with self.open_read(path) as handle:
            return handle.read()

    def read_text(self, path: ImagePath) -> str:
        return self.read_bytes(path).decode()

    # --- writes ----------------------------------------------------------------------------

    def mkdir(self, path: ImagePath, mode: int = 0o755, *, uid: int | None = None,
              gid: int | None = None, follow: bool = True) -> Path:
        """``mkdir -p``: missing parents 0755, the directory ``path`` resolves to (inside
        the tree) gets ``mode`` and ``uid``/``gid``, also when it existed. Its host path.
        ``follow=False``: a symlink at ``path`` itself is an error, not followed."""
        with self._errors("make the directory", path):
            if follow or not _parts(path):
                fd = self._makedirs(_parts(path))
            else:
                with self._parent(path, create=True) as (parent, name):
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o700, dir_fd=parent)
                    if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                        raise OSError(errno.ELOOP, "it is a symlink (not followed)")
                    fd = os.open(name, O_DIR | os.O_NOFOLLOW, dir_fd=parent)
            try:
                _fd_owner_mode(fd, mode, uid, gid)
                return _host(fd)
            finally:
                os.close(fd)

    def write(self, path: ImagePath, data: bytes | str, *, mode: int = 0o644,
              uid: int | None = None, gid: int | None = None) -> Path:
        """Write ``data`` atomically (a temporary file renamed over the name: a symlink or
        file there is replaced, never written through); parents are created. Returns the
        host path written."""
        payload = data.encode() if isinstance(data, str) else data
        with self._errors("write", path), self._parent(path, create=True) as (parent, name):
            _replace(parent, name, lambda fd: _write_all(fd, payload), mode, uid, gid)
            return _host(parent) / name

    def copy_file_in(self, source: Path, path: ImagePath, *, mode: int | None = None,
                     uid: int | None = None, gid: int | None = None) -> Path:
        """Copy the host file ``source`` to ``path`` like :meth:`write` (``mode`` defaults
        to the source's). The source must be a regular file; checking where it may come
        from is the caller's (:func:`allowed_source`)."""
        with self._errors("copy into", path):
            src = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                st = os.fstat(src)
                if not stat.S_ISREG(st.st_mode):
                    raise OSError(errno.EINVAL, f"{source} is not a regular file")
                with self._parent(path, create=True) as (parent, name):
                    _replace(parent, name, lambda fd: _copy_fd(src, fd),
                             st.st_mode & 0o7777 if mode is None else mode, uid, gid)
                    return _host(parent) / name
            finally:
                os.close(src)

    def copy_to(self, path: ImagePath, dest: Root, dest_path: ImagePath, *,
                mode: int | None = None, keep_times: bool = False) -> Path:
        """Copy the regular file ``path`` of this tree to ``dest_path`` in ``dest`` (which
        may be this tree), both resolved in their own root: a kernel from the image tree
        into the ESP tree. ``mode`` defaults to the source's."""
        with self.open_read(path) as handle, dest._errors("copy into", dest_path), \
                    dest._parent(dest_path, create=True) as (parent, name):
            st = os.fstat(handle.fileno())
            _replace(parent, name, functools.partial(_copy_fd, handle.fileno()),
                     st.st_mode & 0o7777 if mode is None else mode, None, None,
                     (st.st_atime_ns, st.st_mtime_ns) if keep_times else None)
            return _host(parent) / name

    def symlink(self, path: ImagePath, target: str, *, uid: int | None = None,
                gid: int | None = None) -> Path:
        """Make ``path`` a symlink to ``target`` (atomically replacing a file or link)."""
        with self._errors("make the symlink", path), \
                self._parent(path, create=True) as (parent, name):
            _replace_symlink(parent, name, target, uid, gid)
            return _host(parent) / name

    def chown(self, path: ImagePath, uid: int, gid: int) -> None:
        """Change the owner of ``path`` itself (a symlink's own owner, never its target's)."""
        with self._errors("chown", path), self._parent(path, create=False) as (parent, name):
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)

    def chmod(self, path: ImagePath, mode: int) -> None:
        """Change the mode of ``path``; a symlink there is refused, never followed."""
        with self._errors("chmod", path), self._parent(path, create=False) as (parent, name):
            _set_owner_mode(parent, name, mode, None, None)

    def set_times(self, path: ImagePath, ns: tuple[int, int]) -> None:
        """Set (atime, mtime) in nanoseconds of ``path`` itself (a symlink is not followed)."""
        with self._errors("set the times of", path), \
                self._parent(path, create=False) as (parent, name):
            os.utime(name, ns=ns, dir_fd=parent, follow_symlinks=False)

    def remove(self, path: ImagePath, *, missing_ok: bool = True) -> bool:
        """Remove the file or symlink ``path`` (not its target); whether it existed."""
        with self._errors("remove", path):
            try:
                with self._parent(path, create=False) as (parent, name):
                    os.unlink(name, dir_fd=parent)
            except (FileNotFoundError, NotADirectoryError):
                if not missing_ok:
                    raise
                return False
        return True

    def rename(self, source: ImagePath, dest: ImagePath) -> None:
        """Rename ``source`` (not followed) to ``dest`` (replaced, not followed)."""
        with self._errors("rename", source), \
                self._parent(source, create=False) as (src_dir, src_name), \
                self._parent(dest, create=True) as (dst_dir, dst_name):
            os.rename(src_name, dst_name, src_dir_fd=src_dir, dst_dir_fd=dst_dir)

    def move_out(self, path: ImagePath, dest: Path) -> None:
        """Rename the directory ``path`` of the tree (a real directory, not a symlink) to
        the host path ``dest`` on the same filesystem."""
        with self._errors("move out", path), \
                self._parent(path, create=False) as (parent, name):
            if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                raise OSError(errno.ENOTDIR, "not a directory (a symlink is not moved)")
            os.rename(name, dest, src_dir_fd=parent)

    def copy_tree_in(self, source: Path, path: ImagePath, *, mode: int | None = None,
                     uid: int | None = None, gid: int | None = None) -> Path:
        """Copy the host directory ``source`` recursively onto ``path`` (merged with what is
        there). Files, symlinks and directories keep the source's modes and times; ``uid``
        and ``gid`` apply to everything copied, ``mode`` (default 0755) to ``path`` itself.

        Symlinks in the source are copied as symlinks, never followed. In the destination a
        file or symlink in the way of a copied file or symlink is replaced; a directory of
        the source is merged into a directory there, or into the directory a symlink there
        resolves to *inside the tree* (``/lib -> usr/lib``); a symlink that does not resolve
        to a directory in the tree is replaced by a directory."""
        with self._errors("copy into", path):
            src = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                dst = self._makedirs(_parts(path))
                try:
                    self._copy_dir(src, dst, "/" + "/".join(_parts(path)), source, uid, gid)
                    _fd_owner_mode(dst, 0o755 if mode is None else mode, uid, gid)
                    return _host(dst)
                finally:
                    os.close(dst)
            finally:
                os.close(src)

    def _copy_dir(self, src: int, dst: int, image: str, where: Path, uid: int | None,
                  gid: int | None) -> None:
        for name in sorted(os.listdir(src)):
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
            times = (st.st_atime_ns, st.st_mtime_ns)
            if stat.S_ISLNK(st.st_mode):
                _replace_symlink(dst, name, os.readlink(name, dir_fd=src), uid, gid)
                os.utime(name, ns=times, dir_fd=dst, follow_symlinks=False)
            elif stat.S_ISREG(st.st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             dir_fd=src)
                try:
                    _replace(dst, name, functools.partial(_copy_fd, fd), st.st_mode & 0o7777,
                             uid, gid, times)
                finally:
                    os.close(fd)
            elif stat.S_ISDIR(st.st_mode):
                child_src = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                    | os.O_CLOEXEC, dir_fd=src)
                try:
                    child_dst, real = self._enter_dir(dst, name, f"{image.rstrip('/')}/{name}")
                    try:
                        self._copy_dir(child_src, child_dst, f"{image.rstrip('/')}/{name}",
                                       where / name, uid, gid)
                    finally:
                        os.close(child_dst)
                    if real:  # not a directory reached through a symlink of the image
                        _set_owner_mode(dst, name, st.st_mode & 0o7777, uid, gid)
                        os.utime(name, ns=times, dir_fd=dst, follow_symlinks=False)
                finally:
                    os.close(child_src)
            else:
                raise OSError(errno.EINVAL, f"{where / name} is not a regular file, "
                                            "directory or symlink")

    def _enter_dir(self, parent: int, name: str, image: str) -> tuple[int, bool]:
        """The directory ``name`` in ``parent`` to copy into, made if missing; whether it is
        a real directory there (False: reached through a symlink, resolved in the tree)."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            os.mkdir(name, 0o700, dir_fd=parent)
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            return os.open(name, O_DIR | os.O_NOFOLLOW, dir_fd=parent), True
        if stat.S_ISLNK(st.st_mode):
            try:
                return self.open(image, O_DIR), False
            except OSError:
                os.unlink(name, dir_fd=parent)  # dangling, a file, a loop: a directory here
                os.mkdir(name, 0o700, dir_fd=parent)
                return os.open(name, O_DIR | os.O_NOFOLLOW, dir_fd=parent), True
        raise OSError(errno.EEXIST, f"{image} exists in the tree and is not a directory")


def parents_path(parts: list[str]) -> str:
    return "/".join(parts) or "."


def _tmp_name() -> str:
    return f"{TMP_PREFIX}{os.getpid()}-{next(_tmp_counter)}"


def _replace(parent: int, name: str, fill: Callable[[int], None], mode: int,
             uid: int | None, gid: int | None,
             times: tuple[int, int] | None = None) -> None:
    """Create a temporary file in ``parent``, fill it, set owner, mode (and times), rename
    it over ``name``."""
    tmp = _tmp_name()
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


def _replace_symlink(parent: int, name: str, target: str, uid: int | None,
                     gid: int | None) -> None:
    tmp = _tmp_name()
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


def _set_owner_mode(parent: int, name: str, mode: int | None, uid: int | None,
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


def _fd_owner_mode(fd: int, mode: int | None, uid: int | None, gid: int | None) -> None:
    """chown/chmod the inode an O_PATH descriptor holds (resolved inside the tree)."""
    proc = f"/proc/self/fd/{fd}"
    if uid is not None or gid is not None:
        os.chown(proc, -1 if uid is None else uid, -1 if gid is None else gid)
    if mode is not None:
        Path(proc).chmod(mode)


def allowed_source(path: Path, roots: Sequence[Path]) -> Path:
    """``path`` with every symlink resolved, if that lies inside one of ``roots`` (also
    resolved); else :class:`~imagecomposer.errors.SourceNotAllowed` naming it.

    The rule for host files a spec copies into the image (``files[].source``): the spec's
    directory tree is what the spec may read, so a ``source`` that is -- or passes through --
    a symlink leading out of it (``shadow -> /etc/shadow``) is refused. Copy the returned
    path, not ``path``. Symlinks *inside* a copied directory are never followed at all
    (:meth:`Root.copy_tree_in` copies them as links). Shared by spec validation and the
    copy, so both apply the same rule.
    """
    resolved = Path(path).resolve()
    for root in roots:
        if resolved.is_relative_to(Path(root).resolve()):
            return resolved
    allowed = ", ".join(str(r) for r in roots) or "none"
    shown = f"{path}" if resolved == Path(path) else f"{path} (resolves to {resolved})"
    raise SourceNotAllowed(f"file source {shown} is outside the directories sources may "
                           f"come from ({allowed})")

"""The :class:`Root` object: a directory tree as the root of a filesystem (see
:mod:`imagecomposer.foundation.rootfs`)."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from imagecomposer.foundation.errors import ImagePathError
from imagecomposer.foundation.rootfs.fileops import (
    copy_fd,
    fd_owner_mode,
    host_of,
    parents_path,
    replace_file,
    replace_symlink,
    set_owner_mode,
    write_all,
)
from imagecomposer.foundation.rootfs.resolve import (
    MAX_SYMLINKS,
    O_DIR,
    ImagePath,
    open_in_root,
    parts_of,
)


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
            image = "/" + "/".join(parts_of(path))
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
        parts = parts_of(path)
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
                    return self._makedirs(base + parts_of(target), hops + 1)
            else:
                set_owner_mode(parent, parts[-1], 0o755, None, None)
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
            return host_of(fd)

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
            if follow or not parts_of(path):
                fd = self._makedirs(parts_of(path))
            else:
                with self._parent(path, create=True) as (parent, name):
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o700, dir_fd=parent)
                    if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                        raise OSError(errno.ELOOP, "it is a symlink (not followed)")
                    fd = os.open(name, O_DIR | os.O_NOFOLLOW, dir_fd=parent)
            try:
                fd_owner_mode(fd, mode, uid, gid)
                return host_of(fd)
            finally:
                os.close(fd)

    def write(self, path: ImagePath, data: bytes | str, *, mode: int = 0o644,
              uid: int | None = None, gid: int | None = None) -> Path:
        """Write ``data`` atomically (a temporary file renamed over the name: a symlink or
        file there is replaced, never written through); parents are created. Returns the
        host path written."""
        payload = data.encode() if isinstance(data, str) else data
        with self._errors("write", path), self._parent(path, create=True) as (parent, name):
            replace_file(parent, name, lambda fd: write_all(fd, payload), mode, uid, gid)
            return host_of(parent) / name

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
                    replace_file(parent, name, lambda fd: copy_fd(src, fd),
                             st.st_mode & 0o7777 if mode is None else mode, uid, gid)
                    return host_of(parent) / name
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
            replace_file(parent, name, functools.partial(copy_fd, handle.fileno()),
                     st.st_mode & 0o7777 if mode is None else mode, None, None,
                     (st.st_atime_ns, st.st_mtime_ns) if keep_times else None)
            return host_of(parent) / name

    def symlink(self, path: ImagePath, target: str, *, uid: int | None = None,
                gid: int | None = None) -> Path:
        """Make ``path`` a symlink to ``target`` (atomically replacing a file or link)."""
        with self._errors("make the symlink", path), \
                self._parent(path, create=True) as (parent, name):
            replace_symlink(parent, name, target, uid, gid)
            return host_of(parent) / name

    def chown(self, path: ImagePath, uid: int, gid: int) -> None:
        """Change the owner of ``path`` itself (a symlink's own owner, never its target's)."""
        with self._errors("chown", path), self._parent(path, create=False) as (parent, name):
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)

    def chmod(self, path: ImagePath, mode: int) -> None:
        """Change the mode of ``path``; a symlink there is refused, never followed."""
        with self._errors("chmod", path), self._parent(path, create=False) as (parent, name):
            set_owner_mode(parent, name, mode, None, None)

    def set_times(self, path: ImagePath, ns: tuple[int, int]) -> None:
        """Set (atime, mtime) in nanoseconds of ``path`` itself (a symlink is not followed)."""
        with self._errors("set the times of", path), \
                self._parent(path, create=False) as (parent, name):
            os.utime(name, ns=ns, dir_fd=parent, follow_symlinks=False)

    def xattrs(self, path: ImagePath) -> dict[str, bytes]:
        """The extended attributes of the file or directory ``path`` (a symlink there is
        not followed: it has none we keep), by name."""
        with self._errors("read the extended attributes of", path), \
                self._fd(path, follow=False) as fd:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                return {}
            inode = f"/proc/self/fd/{fd}"  # the very inode found (an O_PATH descriptor)
            try:
                names = sorted(os.listxattr(inode))
            except OSError as exc:
                if exc.errno == errno.ENOTSUP:  # a filesystem without extended attributes
                    return {}
                raise
            return {name: os.getxattr(inode, name) for name in names}

    def set_xattrs(self, path: ImagePath, values: dict[str, bytes]) -> None:
        """Set extended attributes of the file or directory ``path`` (a symlink there is
        refused, never followed)."""
        if not values:
            return
        with self._errors("set the extended attributes of", path), \
                self._fd(path, follow=False) as fd:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, "it is a symlink (not followed)")
            for name, value in values.items():
                os.setxattr(f"/proc/self/fd/{fd}", name, value)

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
                dst = self._makedirs(parts_of(path))
                try:
                    self._copy_dir(src, dst, "/" + "/".join(parts_of(path)), source, uid, gid)
                    fd_owner_mode(dst, 0o755 if mode is None else mode, uid, gid)
                    return host_of(dst)
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
                replace_symlink(dst, name, os.readlink(name, dir_fd=src), uid, gid)
                os.utime(name, ns=times, dir_fd=dst, follow_symlinks=False)
            elif stat.S_ISREG(st.st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             dir_fd=src)
                try:
                    replace_file(dst, name, functools.partial(copy_fd, fd), st.st_mode & 0o7777,
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
                        set_owner_mode(dst, name, st.st_mode & 0o7777, uid, gid)
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

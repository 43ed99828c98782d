"""Writing files so that a reader (or a later build after a kill) never sees half of one, and
checking that a directory can be written before a build starts."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from imagecomposer.foundation.errors import InsufficientDiskSpace, PermissionDenied


def atomic_write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place.

    On any failure the temporary file is removed and ``path`` is left as it was; the
    ``OSError`` propagates for the caller to name in its own error class.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_writable(path: Path, what: str) -> None:
    """Make sure files can be created in directory ``path`` (or, while it does not exist,
    in the ancestor it would be created under), by creating and removing one.

    ``what`` names the directory for the message ("the output directory"): a failure is a
    :class:`PermissionDenied` naming it and the path (``ENOSPC``:
    :class:`InsufficientDiskSpace`). Nothing is created but the probe file.
    """
    where = nearest_existing(path)
    try:
        if not where.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(where))
        fd, probe = tempfile.mkstemp(prefix=".imagecomposer-probe-", dir=where)
        os.close(fd)
        Path(probe).unlink()
    except OSError as exc:
        detail = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            raise InsufficientDiskSpace(
                f"Insufficient disk space: cannot write {what} {path} ({detail})") from None
        under = f" (under {where})" if where != path.absolute() else ""
        raise PermissionDenied(f"Permission denied: cannot write {what} {path}{under}: "
                               f"{detail}") from None

"""Atomic replacement of an output directory.

Outputs are assembled in a staging directory beside the target (same filesystem) and
swapped in with ``renameat2(RENAME_EXCHANGE)``: a reader sees either the complete previous
outputs or the complete new ones, never a mixture and never nothing. Where the kernel or
filesystem lacks the exchange, two renames are used and the old directory is put back if the
second fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from imagecomposer.foundation.errors import ExportError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False when renameat2 is unavailable for them."""
    func = getattr(_libc, "renameat2", None)
    if func is None:
        return False
    rc = func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def replace_dir(staged: Path, target: Path) -> None:
    """Make ``staged`` become ``target``, replacing any previous ``target`` atomically."""
    try:
        if not target.exists():
            staged.rename(target)
            return
        if _exchange(staged, target):
            shutil.rmtree(staged)  # now holds the previous outputs
            return
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
        try:
            staged.rename(target)
        except OSError:
            old.rename(target)
            raise
        shutil.rmtree(old)
    except OSError as exc:
        raise ExportError(f"cannot move outputs into {target}: {exc.strerror}") from None


def staging_dir(target: Path) -> Path:
    """``.NAME.staging-PID-RANDOM`` beside ``target``: the pid says whose it is."""
    return target.with_name(f".{target.name}.staging-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def leftover_staging_dirs(target: Path) -> list[Path]:
    """Staging directories for ``target`` whose process is gone (a killed build's)."""
    prefix = f".{target.name}.staging-"
    found = []
    with contextlib.suppress(OSError):
        for path in target.parent.iterdir():
            if not path.name.startswith(prefix):
                continue
            pid = path.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and not pid_running(int(pid)):
                found.append(path)
    return sorted(found)


def pid_running(pid: int) -> bool:
    """Whether process ``pid`` runs (ours always does; another user's counts as running),
    for the leftovers named by the pid of the process that made them."""
    if pid == os.getpid():
        return True  # never guess about our own
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A fresh staging directory for ``target``; committed on success, removed on failure
    (including KeyboardInterrupt)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = staging_dir(target)
    stage.mkdir()
    try:
        yield stage
        replace_dir(stage, target)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)

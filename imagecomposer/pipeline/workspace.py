"""The per-build workspace: where stages leave their outputs and record that they finished.

Layout under ``work_dir``::

    <image name>-<12 hex of the spec path hash>/
        .lock               held (flock) by the build using the workspace; holds its pid
        state.json          completed stages with their input hashes (written atomically)
        <stage>/...         each stage's outputs
        tmp-*/              scratch trees of the running build

A stage counts as done only once its record is in ``state.json``; the record is written
after the stage's outputs are in place, and replaced atomically, so an interrupted build
never leaves a state that claims work it did not finish.

One build at a time: :meth:`Workspace.locked` takes an exclusive ``flock`` on ``.lock`` for
the whole build. A second build of the same spec fails at once with :class:`WorkspaceBusy`
naming the holder's pid and command line, or waits for it (``wait=True``). The kernel drops
the lock when its holder dies, however it dies, so a killed build never wedges the
workspace; and whoever holds the lock knows that nothing else writes the workspace, so it
may remove what a killed build left there (:meth:`Workspace.remove_leftovers`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.foundation.cleanup import remove_tree
from imagecomposer.foundation.errors import WorkspaceBusy
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.foundation.staging import leftover_staging_dirs
from imagecomposer.foundation.units import human_size

log = logging.getLogger("imagecomposer.pipeline")

LOCK_FILE = ".lock"
PROC_LOCKS = Path("/proc/locks")


@attrs.frozen
class StageRecord:
    fingerprint: str
    inputs: dict[str, str]
    seconds: float


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._state_path = root / "state.json"

    @classmethod
    def for_spec(cls, work_dir: Path, name: str, spec_path: Path | None) -> Workspace:
        ident = str(spec_path.resolve()) if spec_path is not None else name
        digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
        return cls(work_dir / f"{name}-{digest}")

    def stage_dir(self, stage: str) -> Path:
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def records(self) -> dict[str, StageRecord]:
        try:
            data: dict[str, Any] = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}
        out: dict[str, StageRecord] = {}
        for stage, rec in data.get("stages", {}).items():
            try:
                out[stage] = StageRecord(rec["fingerprint"], dict(rec["inputs"]),
                                         float(rec["seconds"]))
            except (KeyError, TypeError, ValueError):
                continue  # an unreadable record means "not done"
        return out

    def record(self, stage: str, record: StageRecord) -> None:
        records = self.records()
        records[stage] = record
        self._write(records)

    def forget(self, stage: str) -> None:
        records = self.records()
        if records.pop(stage, None) is not None:
            self._write(records)

    def _write(self, records: dict[str, StageRecord]) -> None:
        data = {"stages": {k: attrs.asdict(v) for k, v in sorted(records.items())}}
        atomic_write(self._state_path, json.dumps(data, indent=1, sort_keys=True))

    # --- one build at a time -------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, *, wait: bool = False) -> Iterator[None]:
        """Hold the workspace for the ``with`` block: :class:`WorkspaceBusy` at once if
        another build holds it, or (``wait``) block until it is released."""
        path = self.root / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid, command = lock_holder(path)
                holder = _describe(pid, command)
                if not wait:
                    raise WorkspaceBusy(
                        f"Workspace busy: another build of this spec is running "
                        f"({holder}) in {self.root}; wait for it to finish, or pass --wait "
                        "to start when it has", str(self.root), pid, command) from None
                log.info("waiting for the build that holds %s (%s)", self.root, holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def remove_leftovers(self, output_dir: Path | None = None) -> list[Path]:
        """Remove what a killed build left; call it holding :meth:`locked`.

        Scratch trees (``tmp*``) and half-written disk images (``*.partial``) in the
        workspace go unconditionally: the lock says no other build is writing here.
        Staging directories beside ``output_dir`` (``.NAME.staging-PID-*``) go when their
        process is gone. Each removal is logged at INFO with the space it freed.
        """
        found = [*self.root.glob("tmp*"), *self.root.glob("*.partial"),
                 *self.root.glob("*/*.partial")]
        if output_dir is not None:
            found += leftover_staging_dirs(output_dir)
        freed = 0
        for path in sorted(set(found)):
            size = disk_usage(path)
            remove_tree(path)
            freed += size
            log.info("removed %s, left by an interrupted build (%s)", path, human_size(size))
        if found:
            log.info("removing the leftovers of an interrupted build freed %s",
                     human_size(freed))
        return sorted(set(found))

    def remove_temp(self) -> None:
        """Remove scratch directories (``tmp*``) left by stages; outputs stay."""
        for child in self.root.glob("tmp*"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def lock_holder(path: Path) -> tuple[int | None, str | None]:
    """(pid, command line) of the process holding the ``flock`` on ``path``, each None when
    unknown: the kernel's lock table first, else the pid the holder wrote into the file."""
    pid = None
    with contextlib.suppress(OSError, ValueError):
        st = path.stat()
        inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        for line in PROC_LOCKS.read_text().splitlines():
            fields = line.split()  # 1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode:
                pid = int(fields[4])
                break
    if pid is None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(path.read_text().split()[0])
    command = None
    if pid is not None:
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            command = shlex.join(a.decode("utf-8", "replace") for a in raw.split(b"\0")
                                 if a) or None
    return pid, command


def _describe(pid: int | None, command: str | None) -> str:
    if pid is None:
        return "pid unknown"
    return f"pid {pid}: {command}" if command else f"pid {pid}"


def disk_usage(path: Path) -> int:
    """Bytes of disk ``path`` occupies (allocated blocks: a sparse disk image counts what it
    holds), each inode once, symbolic links not followed."""
    seen: set[tuple[int, int]] = set()
    total = 0
    todo = [path]
    while todo:
        current = todo.pop()
        try:
            st = current.lstat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError):
                todo.extend(current.iterdir())
    return total

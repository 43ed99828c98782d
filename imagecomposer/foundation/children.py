"""Every child dies with the build, even when the build is killed with SIGKILL.

:mod:`imagecomposer.foundation.runner` applies two mechanisms to every child it starts:

1. **PR_SET_PDEATHSIG.** Before ``exec`` the child asks the kernel for SIGKILL when its parent
   goes away. The kernel sends it when the *thread* that forked the child exits, not only
   the process: :func:`runner.run` waits for its child in the thread that started it, and
   :func:`runner.spawn` kills its child when the ``with`` block ends, so no child outlives
   its thread by design. The chroot path's ``unshare --fork --pid --kill-child`` hands the
   signal on: ``unshare`` dies, ``--kill-child`` kills the PID namespace's init, and the
   kernel kills everything in the namespace.

2. **The reaper.** PDEATHSIG reaches the direct child only; its children (a maintainer
   script dpkg started, both sides of a ``dpkg-deb | tar`` pipe) are orphaned and would go
   on writing into the workspace. Each child runs in its own process group, and one small
   ``sh`` per build process (in a session of its own, ignoring terminal signals) reads the
   groups of the running children from a pipe: ``+PGID`` when a child starts, ``-PGID`` when
   it has been reaped. The kernel closes the pipe when the build process ends, however it
   ends, and the reaper then SIGKILLs every group still registered and exits.

A pid is not reused while a process group of that id has a member, and a group is
unregistered once its leader is reaped, so the reaper never signals a stranger's group
(only a group whose leader was reaped and whose stragglers all exited in the microseconds
before the unregistration could be reused; that needs a full pid wrap-around in between).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable

log = logging.getLogger("imagecomposer.run")

_PR_SET_PDEATHSIG = 1

# Resolved once here: the child between fork and exec must not dlopen or look up symbols.
try:
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None

REAPER_SCRIPT = r"""
trap '' HUP INT TERM QUIT PIPE
live=' '
while read -r line; do
  group=${line#?}
  case $group in ''|*[!0-9]*) continue ;; esac
  case $line in
    +*) live="$live$group " ;;
    -*) case $live in *" $group "*) live="${live%% $group *} ${live#* $group }" ;; esac ;;
  esac
done
for group in $live; do kill -s KILL -- "-$group" 2>/dev/null; done
exit 0
"""


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGKILL when the calling thread ends.

    If the parent died between ``fork`` and the ``prctl`` (the signal would then never
    come), the child kills itself at once.
    """
    parent = os.getpid()

    def preexec() -> None:  # pragma: no cover - runs in the child
        if _prctl is None:
            return
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def die_with(parent: int) -> None:
    """In a child process started by ``parent`` (e.g. with multiprocessing's spawn): get
    SIGKILL when the parent's starting thread ends; die at once if the parent already has."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


class _Reaper:
    """The build process's reaper: started on first use, again after a fork or its death."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: set[int] = set()
        self._fd: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def register(self, group: int) -> None:
        with self._lock:
            self._groups.add(group)
            self._send(f"+{group}\n")

    def unregister(self, group: int) -> None:
        with self._lock:
            if group in self._groups:
                self._groups.discard(group)
                self._send(f"-{group}\n")

    @property
    def pid(self) -> int | None:
        """The reaper's pid while it runs (for tests)."""
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def _send(self, line: str) -> None:
        for _attempt in range(2):
            fd = self._ensure()
            if fd is None:
                return
            try:
                os.write(fd, line.encode())
                return
            except OSError:  # the reaper was killed: start another one with every group
                log.warning("the child-process reaper %s is gone; starting another",
                            self._proc.pid if self._proc is not None else "?")
                self._close()
                if self._proc is not None:
                    self._proc.poll()  # reap it
                line = "".join(f"+{g}\n" for g in sorted(self._groups)) or line

    def after_fork(self) -> None:
        """In a forked child: drop the parent's pipe (or the reaper would wait for this
        process too) and its groups; the child starts a reaper of its own if it needs one."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self._fd, self._proc = None, None
        self._groups = set()

    def _ensure(self) -> int | None:
        if self._fd is not None:
            return self._fd
        read, write = os.pipe()  # both close-on-exec: no other child holds the write end
        try:
            self._proc = subprocess.Popen(
                ["/bin/sh", "-c", REAPER_SCRIPT, "imagecomposer-reaper"], stdin=read,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
        except OSError as exc:
            os.close(write)
            log.warning("cannot start the child-process reaper (%s): children of killed "
                        "tools may outlive a killed build", exc)
            return None
        finally:
            os.close(read)
        self._fd = write
        return write

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None

    def shutdown(self) -> None:
        """At interpreter exit: close the pipe, so the reaper kills what is left and exits."""
        with self._lock:
            proc = self._proc
            self._close()
            self._proc = None
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)


_REAPER = _Reaper()
atexit.register(_REAPER.shutdown)
os.register_at_fork(after_in_child=_REAPER.after_fork)


def register(group: int) -> None:
    """Kill process group ``group`` if this process dies before :func:`unregister`."""
    _REAPER.register(group)


def unregister(group: int) -> None:
    """``group``'s leader was reaped: the reaper forgets it."""
    _REAPER.unregister(group)


def reaper_pid() -> int | None:
    return _REAPER.pid

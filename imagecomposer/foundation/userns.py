"""Rootless builds: an unprivileged process becomes root of a user namespace of its own.

A build needs root for what it does to an image tree: dpkg and maintainer scripts set owners
and setuid bits, ``useradd`` gives ``/etc/shadow`` to the shadow group, ``mkfs -d`` writes
those owners into the filesystems, the sandbox mounts ``/proc`` and pivots into the tree.
None of it needs root of the *host*. :func:`become_root` moves the calling process into a
new user namespace whose id maps are

    inside 0           the user's own uid and gid   (what the build writes for itself: its
                                                     workspace, caches and outputs)
    inside 1 .. 65535  the user's subordinate ids   (/etc/subuid, /etc/subgid: the image's
                                                     system users, groups and users)

written by the setuid helpers ``newuidmap``/``newgidmap`` (package uidmap), which check them
against ``/etc/subuid`` and ``/etc/subgid`` — what ``unshare --map-users``/``--map-auto``,
podman and mmdebstrap's unshare mode do. The process then holds every capability *inside*
that namespace and none over the host: it can act only on what the user owns. The
namespaces the sandbox makes below it (mount, PID, IPC, UTS, network) belong to it, so the
sandbox runs unchanged. On the host's disk a file the image gives to root belongs to the
user and one it gives to uid 100 to the first subordinate uid + 99; every tool reading the
tree from inside (``mkfs -d``, ``cp -a``, ``tar``) sees 0 and 100, so the image holds the
same owners as a root build's.

Only the calling process changes, and the children it starts afterwards. The kernel lets
only a single-threaded process enter a user namespace: a threaded program (a notebook)
builds through :func:`imagecomposer.build_many`, which builds in processes of their own.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, NoReturn

import attrs

from imagecomposer.foundation import runner, sandbox
from imagecomposer.foundation.errors import CommandError, RootlessUnavailable

log = logging.getLogger(__name__)

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
PROC_SYS = Path("/proc/sys")
IDS = 65536  # ids inside the namespace: 0 .. 65535 (65534 is nobody)
SUBORDINATE = IDS - 1  # subordinate ids needed: inside 1 .. 65535
FIRST_SUBORDINATE = 100000  # where useradd starts allocating (login.defs SUB_UID_MIN)
CLONE_NEWUSER = 0x10000000
DOC = "docs/rootless.md"


@attrs.frozen
class IdMap:
    """The ids of a rootless build: inside 0 is ``uid``/``gid`` (the user), inside
    1 .. 65535 are ``subuid`` .. ``subuid + 65534`` (and the same for groups)."""

    user: str
    uid: int
    gid: int
    subuid: int
    subgid: int

    def arguments(self, kind: Literal["uid", "gid"]) -> list[str]:
        """The ``newuidmap``/``newgidmap`` mapping triplets (inside, outside, count)."""
        own, sub = (self.uid, self.subuid) if kind == "uid" else (self.gid, self.subgid)
        return ["0", str(own), "1", "1", str(sub), str(SUBORDINATE)]

    def host_uid(self, inside: int) -> int:
        """The host uid of ``inside`` (what ``ls -n`` on the host shows)."""
        return self.uid if inside == 0 else self.subuid + inside - 1

    def host_gid(self, inside: int) -> int:
        return self.gid if inside == 0 else self.subgid + inside - 1

    def __str__(self) -> str:
        last = SUBORDINATE - 1
        return (f"uid 0 = {self.user}'s {self.uid}, 1-{SUBORDINATE} = "
                f"{self.subuid}-{self.subuid + last}; gid 0 = {self.gid}, 1-{SUBORDINATE} = "
                f"{self.subgid}-{self.subgid + last}")


def _ranges(path: Path) -> list[tuple[str, int, int]]:
    """(owner, start, count) of every well-formed line of a subid file (none if missing)."""
    try:
        text = path.read_text()
    except (FileNotFoundError, PermissionError):
        return []
    found = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] and not parts[0].startswith("#"):
            try:
                found.append((parts[0], int(parts[1]), int(parts[2])))
            except ValueError:
                continue
    return found


def subordinate_start(path: Path, user: str, uid: int, count: int = SUBORDINATE
                      ) -> int | None:
    """The start of the first range in ``path`` (``/etc/subuid`` format) that belongs to
    ``user`` (by name or number) and holds ``count`` ids; None if there is none."""
    for owner, start, size in _ranges(path):
        if owner in (user, str(uid)) and size >= count:
            return start
    return None


def free_start(paths: Sequence[Path]) -> int:
    """A start for a new range of :data:`IDS` ids after every range in ``paths`` (the
    ``usermod --add-subuids`` the error message suggests)."""
    end = FIRST_SUBORDINATE
    for path in paths:
        for _owner, start, size in _ranges(path):
            end = max(end, start + size)
    return end


def _sysctl(proc_sys: Path, name: str) -> str | None:
    try:
        return (proc_sys / name.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def plan(*, uid: int | None = None, gid: int | None = None, user: str | None = None,
         subuid: Path = SUBUID, subgid: Path = SUBGID, proc_sys: Path = PROC_SYS,
         which: Callable[[str], str | None] = runner.which) -> IdMap:
    """The id map for the current (or the given) user, or :class:`RootlessUnavailable`
    naming everything that is missing and the commands that set it up."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    if user is None:
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
    problems: list[str] = []
    commands: list[str] = []
    if which("newuidmap") is None or which("newgidmap") is None:
        problems.append("newuidmap and newgidmap are not installed (package uidmap)")
        commands.append("apt-get install uidmap")
    first_uid = subordinate_start(subuid, user, uid)
    first_gid = subordinate_start(subgid, user, uid)
    missing = [f"{kind} in {path}" for kind, path, first in (
        ("uids", subuid, first_uid), ("gids", subgid, first_gid)) if first is None]
    if missing:
        problems.append(f"{user} has no range of {SUBORDINATE} subordinate "
                        + " and none of ".join(missing))
        start = free_start((subuid, subgid))
        span = f"{start}-{start + SUBORDINATE}"
        commands.append(f"usermod --add-subuids {span} --add-subgids {span} {user}")
    for name, bad, fix, why in (
            ("kernel.unprivileged_userns_clone", "0", "1",
             "user namespaces are disabled for unprivileged users"),
            ("user.max_user_namespaces", "0", "15000", "user namespaces are disabled"),
            ("kernel.apparmor_restrict_unprivileged_userns", "1", "0",
             "AppArmor gives unprivileged user namespaces no capabilities")):
        if _sysctl(proc_sys, name) == bad:
            problems.append(f"{why} ({name} = {bad})")
            commands.append(f"sysctl -w {name}={fix}")
    if problems:
        raise RootlessUnavailable(_message(user, uid, problems, commands))
    assert first_uid is not None and first_gid is not None
    return IdMap(user, uid, gid, first_uid, first_gid)


def _message(user: str, uid: int, problems: Sequence[str], commands: Sequence[str]) -> str:
    lines = [f"Permission denied: building as {user} (uid {uid}, not root) needs a user "
             "namespace with the user's subordinate ids, and here"]
    lines += [f"  - {problem}" for problem in problems]
    if commands:
        lines.append(f"Set it up as root (see {DOC}):")
        lines += [f"  {command}" for command in commands]
    lines.append("or build as root.")
    return "\n".join(lines)


_ENTERED: IdMap | None = None


def entered() -> IdMap | None:
    """The id map this process entered with :func:`become_root` (None: it did not)."""
    return _ENTERED


def become_root(*, probe: bool = True) -> IdMap | None:
    """Make this unprivileged process root of a new user namespace mapped to the user and
    its subordinate ids (see the module's documentation); None as root, where nothing
    changes. Called again, it returns the map it entered.

    Raises :class:`RootlessUnavailable`, before anything else happened, when a piece is
    missing (subordinate ids, newuidmap, user namespaces) or the process has threads. With
    ``probe`` the sandbox is then tried once on an empty tree, so a kernel or security
    module that refuses its mounts in a user namespace is also one error up front.
    """
    global _ENTERED
    if _ENTERED is not None:
        return _ENTERED
    if os.geteuid() == 0:
        return None
    idmap = plan()
    if threading.active_count() > 1:
        raise RootlessUnavailable(
            f"Permission denied: building as {idmap.user} (not root) makes this process root "
            "of a user namespace, which the kernel allows a single-threaded process only; "
            f"this one runs {threading.active_count()} threads: build with "
            "imagecomposer.build_many() (each build in a process of its own)")
    _enter(idmap)
    _ENTERED = idmap
    log.info("building without root: root of a user namespace (%s)", idmap)
    if probe:
        probe_sandbox()
    return idmap


def become_root_if_set_up() -> IdMap | None:
    """:func:`become_root` (without the sandbox probe) when this user has what it needs,
    else None and nothing changes: for removing what rootless builds left (cache entries
    and trees hold the user's subordinate ids, which the user alone cannot remove)."""
    if _ENTERED is not None or os.geteuid() == 0:
        return _ENTERED
    try:
        plan()
    except RootlessUnavailable as exc:
        log.debug("staying unprivileged: %s", exc)
        return None
    return become_root(probe=False)


def _enter(idmap: IdMap) -> None:
    """unshare(CLONE_NEWUSER) here while a forked helper, still outside, writes the maps."""
    libc = ctypes.CDLL(None, use_errno=True)
    go_read, go_write = os.pipe()
    err_read, err_write = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the helper, outside the namespace
        _helper(parent, idmap, go_read, go_write, err_read, err_write)
    os.close(go_read)
    os.close(err_write)
    unshared = False
    errno = 0
    try:
        unshared = libc.unshare(CLONE_NEWUSER) == 0
        errno = 0 if unshared else ctypes.get_errno()
        if unshared:
            os.write(go_write, b"1")
    finally:
        os.close(go_write)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(err_read, "rb") as err:
            detail = err.read().decode("utf-8", "replace").strip()
    if not unshared:
        raise RootlessUnavailable(_message(idmap.user, idmap.uid, [
            f"the kernel refused a new user namespace: {os.strerror(errno)} (user "
            "namespaces disabled or restricted: kernel.unprivileged_userns_clone, "
            "user.max_user_namespaces, a seccomp filter of a container)"], []))
    if os.waitstatus_to_exitcode(status) != 0:
        # This process is in the namespace, unmapped: it can do nothing useful any more.
        raise RootlessUnavailable(_message(idmap.user, idmap.uid, [
            f"writing the id maps failed: {detail or 'newuidmap/newgidmap failed'}"], []))
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _helper(parent: int, idmap: IdMap, go_read: int, go_write: int, err_read: int,
            err_write: int) -> NoReturn:  # pragma: no cover - runs in the forked helper
    code = 1
    try:
        os.close(go_write)
        os.close(err_read)
        if os.read(go_read, 1) == b"1":  # the parent is in its namespace: map it
            kinds: tuple[tuple[str, Literal["uid", "gid"]], ...] = (
                ("newuidmap", "uid"), ("newgidmap", "gid"))
            for tool, kind in kinds:
                runner.run([tool, str(parent), *idmap.arguments(kind)],
                           capture=True, what=f"{tool} for the build's user namespace")
        code = 0
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(err_write, str(exc).encode("utf-8", "replace"))
    finally:
        os._exit(code)


def probe_sandbox() -> None:
    """Run ``true`` in the build sandbox on an empty tree: every mount it makes (proc in a
    new PID namespace, sysfs, devpts, tmpfs, binds) is refused here if the user namespace
    is restricted (AppArmor, a container that masks ``/proc``)."""
    with tempfile.TemporaryDirectory(prefix="imagecomposer-probe-") as tmp:
        try:
            runner.run(sandbox.host_tool_argv(Path(tmp).absolute(), ["true"]), capture=True,
                       what="a trial of the build sandbox in the user namespace")
        except CommandError as exc:
            user = _ENTERED.user if _ENTERED is not None else str(os.getuid())
            uid = _ENTERED.uid if _ENTERED is not None else os.getuid()
            raise RootlessUnavailable(_message(user, uid, [
                "the build sandbox cannot be set up in a user namespace: "
                + (exc.stderr_tail.strip().splitlines() or [str(exc)])[-1]
                + " (AppArmor's kernel.apparmor_restrict_unprivileged_userns, or a container "
                "that masks /proc or /sys, refuses its mounts)"], [])) from exc

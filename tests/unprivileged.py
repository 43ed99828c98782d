"""Unprivileged users for the tests of rootless builds (tests run as root, like CI).

``unprivileged_user(subids=True)`` makes a user that exists for the test only, touching no
host file: its entries (and, with ``subids``, one range of 65536 subordinate uids and gids
after every existing range) are added to COPIES of ``/etc/passwd``, ``/etc/group``,
``/etc/subuid`` and ``/etc/subgid`` in a temporary directory, which also holds its home.
Everything the user runs (``user.run``) runs in a private mount namespace where those copies
are bound over the host's files, so ``setpriv --init-groups``, Python's ``pwd`` and the
setuid ``newuidmap``/``newgidmap`` (which check the ranges in ``/etc/subuid``) see the user;
the host's ``/etc`` never changes and nothing is left behind when a session dies but the
temporary directory. ``user.python(...)`` runs this checkout's imagecomposer as that user:
with this interpreter when the user can run it, else with the host's ``python3`` of the
same version (a pyenv or venv under ``/root`` is closed to other users), and with readable
copies of the checkout and the site-packages when the originals are not readable by the
user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import attrs
import pytest

from imagecomposer.foundation import userns

REPO = Path(__file__).resolve().parents[1]
CHECK = "import imagecomposer, solv, yaml; print(imagecomposer.__file__)"
ID_FILES = ("passwd", "group", "subuid", "subgid")  # copies bound over the host's
FIRST_UID = 40000  # test users' ids: 40000 .. 59999, none the host uses
# the setup run as root in the user's private mount namespace before setpriv: $0 is the
# directory of the copies
BIND = ('set -e; for f in ' + " ".join(ID_FILES) + '; do mount --bind "$0/$f" "/etc/$f"; '
        'done; exec "$@"')
_TAKEN: set[int] = set()


def tools_missing() -> str | None:
    """Why rootless tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root to create a user"
    for tool in ("unshare", "mount", "setpriv", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"needs {tool} (packages util-linux, mount, uidmap)"
    for name in ID_FILES:
        if not Path("/etc", name).is_file():
            return f"needs /etc/{name} to bind a copy over"
    return None


@attrs.frozen
class User:
    name: str
    uid: int
    gid: int
    home: Path
    subuid: int | None
    subgid: int | None
    interpreter: str
    pythonpath: str
    etc: Path  # the copies of ID_FILES holding the user

    @property
    def checkout(self) -> Path:
        """This checkout (imagecomposer/, tests/, examples/) where the user can read it."""
        return Path(self.pythonpath.split(os.pathsep)[0])

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
                "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL": "C.UTF-8",
                "PYTHONPATH": self.pythonpath, **(extra or {})}

    def run(self, argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
            timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``argv`` as this user (real and effective ids, its own groups only)."""
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", BIND,
             str(self.etc),
             "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
             "--reset-env", "--", "env", *(f"{k}={v}" for k, v in self.env(env).items()),
             *map(str, argv)],
            capture_output=True, text=True, cwd=cwd or self.home, timeout=timeout,
            check=False)

    def python(self, *args: str | Path, env: Mapping[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.run([self.interpreter, *args], env=env, timeout=timeout)

    def imagecomposer(self, *args: str | Path, env: Mapping[str, str] | None = None,
                      timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return self.python("-m", "imagecomposer", *args, env=env, timeout=timeout)


def _ids_in_use() -> set[int]:
    used = set(_TAKEN)
    for name in ("passwd", "group"):
        for line in Path("/etc", name).read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 2 and parts[2].isdigit():
                used.add(int(parts[2]))
    return used


def _free_id() -> int:
    """A uid (and gid) no host user or group has and no other test user of this process."""
    used = _ids_in_use()
    for offset in range(20000):  # start by the pid: concurrent sessions pick different ones
        candidate = FIRST_UID + (os.getpid() + offset) % 20000
        if candidate not in used:
            _TAKEN.add(candidate)
            return candidate
    raise RuntimeError("no free id for a test user")


def _write_ids(etc: Path, name: str, uid: int, home: Path, subids: int | None) -> None:
    """Copies of the host's ID_FILES in ``etc`` with ``name`` added."""
    added = {"passwd": f"{name}:x:{uid}:{uid}::{home}:/bin/sh",
             "group": f"{name}:x:{uid}:",
             "subuid": None if subids is None else f"{name}:{subids}:{userns.IDS}",
             "subgid": None if subids is None else f"{name}:{subids}:{userns.IDS}"}
    for file, line in added.items():
        text = Path("/etc", file).read_text()
        if line is not None:
            text += ("" if text.endswith("\n") or not text else "\n") + line + "\n"
        (etc / file).write_text(text)
        (etc / file).chmod(0o644)


def _python_for(probe: User, scratch: Path) -> tuple[str, str] | None:
    """(interpreter, PYTHONPATH) with which ``probe`` imports this checkout, or None."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    interpreters = [sys.executable, f"/usr/bin/python{version}"]
    site = list(dict.fromkeys([sysconfig.get_paths()["purelib"],
                               sysconfig.get_paths()["platlib"]]))
    plain = os.pathsep.join([str(REPO), *site])
    copied: str | None = None
    for interpreter in interpreters:
        if not Path(interpreter).exists():
            continue
        for attempt in ("plain", "copied"):
            if attempt == "copied" and copied is None:
                copied = _readable_copies(scratch, site)
            path = plain if attempt == "plain" else copied
            assert path is not None
            done = attrs.evolve(probe, interpreter=interpreter, pythonpath=path).python(
                "-c", CHECK, timeout=60)
            if done.returncode == 0 and done.stdout.strip().startswith(
                    str(Path(path.split(os.pathsep)[0]) / "imagecomposer")):
                return interpreter, path
    return None


def _readable_copies(scratch: Path, site: Sequence[str]) -> str:
    """Copies of the checkout (package, tests, examples) and of the site-packages in
    ``scratch``."""
    code = scratch / "code"
    code.mkdir(mode=0o755)
    for name in ("imagecomposer", "tests", "examples"):
        shutil.copytree(REPO / name, code / name,
                        ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    shutil.copy(REPO / "pyproject.toml", code / "pyproject.toml")
    paths = [str(code)]
    for number, directory in enumerate(site):
        target = scratch / f"site{number}"
        subprocess.run(["cp", "-a", "--reflink=auto", directory, str(target)], check=True)
        paths.append(str(target))
    subprocess.run(["chmod", "-R", "a+rX", str(scratch)], check=True)
    return os.pathsep.join(paths)


@contextlib.contextmanager
def unprivileged_user(tag: str, *, subids: bool) -> Iterator[User]:
    """A user ``ic<tag><pid>`` for the test only (see the module's documentation)."""
    reason = tools_missing()
    if reason is not None:
        pytest.skip(reason)
    name = f"ic{tag}{os.getpid()}"[:32]
    scratch = Path(tempfile.mkdtemp(prefix=f"ic-user-{name}-"))
    scratch.chmod(0o755)
    try:
        uid = _free_id()
        home, etc = scratch / "home", scratch / "etc"
        etc.mkdir(mode=0o755)
        home.mkdir(mode=0o755)
        os.chown(home, uid, uid)
        start = userns.free_start((userns.SUBUID, userns.SUBGID)) if subids else None
        _write_ids(etc, name, uid, home, start)
        user = User(name, uid, uid, home, start, start, sys.executable, "", etc)
        found = _python_for(user, scratch)
        if found is None:
            pytest.skip(f"no Python interpreter {name} can run this checkout with")
        yield attrs.evolve(user, interpreter=found[0], pythonpath=found[1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

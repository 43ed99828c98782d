"""Unprivileged users for the tests of rootless builds (tests run as root, like CI).

``unprivileged_user(subids=True)`` creates a real user with ``useradd`` (newuidmap looks
the user up by name) and, with ``subids``, one range of 65536 subordinate uids and gids
added with ``usermod --add-subuids/--add-subgids`` after every existing range; it removes
the user, its home and its ranges afterwards. ``user.python(...)`` runs this checkout's
imagecomposer as that user: with this interpreter when the user can run it, else with the
host's ``python3`` of the same version (a pyenv or venv under ``/root`` is closed to other
users), and with readable copies of the checkout and the site-packages when the originals
are not readable by the user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
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


def tools_missing() -> str | None:
    """Why rootless tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root to create a user"
    for tool in ("useradd", "usermod", "userdel", "setpriv", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"needs {tool} (packages passwd, util-linux, uidmap)"
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
            ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
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


def _useradd(name: str) -> None:
    # -K ...=0: no automatic subordinate ranges; the test adds exactly the one it wants
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "-K", "SUB_UID_COUNT=0",
                    "-K", "SUB_GID_COUNT=0", name], check=True, capture_output=True)


def _userdel(name: str, span: str | None) -> None:
    if span is not None:
        subprocess.run(["usermod", "--del-subuids", span, "--del-subgids", span, name],
                       check=False, capture_output=True)
    subprocess.run(["userdel", "--force", "--remove", name], check=False,
                   capture_output=True)


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
    """A new user ``ic<tag><pid>`` (see the module's documentation)."""
    reason = tools_missing()
    if reason is not None:
        pytest.skip(reason)
    name = f"ic{tag}{os.getpid()}"[:32]
    span: str | None = None
    scratch = Path(tempfile.mkdtemp(prefix="ic-user-python-"))
    scratch.chmod(0o755)
    _useradd(name)
    try:
        entry = pwd.getpwnam(name)
        start = None
        if subids:
            start = userns.free_start((userns.SUBUID, userns.SUBGID))
            span = f"{start}-{start + userns.IDS - 1}"
            subprocess.run(["usermod", "--add-subuids", span, "--add-subgids", span, name],
                           check=True, capture_output=True)
        user = User(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), start, start,
                    sys.executable, "")
        found = _python_for(user, scratch)
        if found is None:
            pytest.skip(f"no Python interpreter {name} can run this checkout with")
        yield attrs.evolve(user, interpreter=found[0], pythonpath=found[1])
    finally:
        _userdel(name, span)
        shutil.rmtree(scratch, ignore_errors=True)

"""Defaults that work without root: a user that is not root gets its caches under
$XDG_CACHE_HOME (~/.cache/imagecomposer) and its workspaces under $XDG_STATE_HOME
(~/.local/state/imagecomposer/work); nothing is created by a constructor, nothing is written
outside the user's own directories, and a directory it cannot write is one clear error."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagecomposer.config.model import default_cache_dir, default_work_dir

SCRIPT = r'''
import hashlib, json, os, sys
from pathlib import Path

import attrs

from imagecomposer.cache import Caches, ImageCache, PackageCache
from imagecomposer.cache.images import CacheKey
from imagecomposer.config import load_config
from imagecomposer.foundation.errors import CacheNotWritable
from imagecomposer.lock import Lock, LockedPackage

home = Path(os.environ["HOME"])
config = load_config().config
out = {"uid": os.geteuid(), "cache_dir": str(config.core.cache_dir),
       "work_dir": str(config.core.work_dir)}
packages = PackageCache(config)
images = ImageCache.for_config(config)
caches = Caches(config)
out["listed_before"] = caches.list().count
out["created_by_constructors"] = sorted(p.name for p in home.iterdir())
package = Path(sys.argv[1])
data = package.read_bytes()
lock = Lock(os="debian", version="12", arch="amd64", kind="deb", repositories=(),
            packages=(LockedPackage(name="hello", version="1.0", arch="amd64",
                                    repository="local", url=package.as_uri(),
                                    sha256=hashlib.sha256(data).hexdigest(),
                                    size=len(data)),))
out["fetched"] = str(packages.fetch(lock)["hello"])
outputs = home / "outputs"
outputs.mkdir()
(outputs / "hello.raw").write_bytes(b"an image")
key = CacheKey("hello", "aa" * 32, (("lock", "aa" * 32),))
images.store(key, outputs)
out["image_hit"] = images.lookup(key) is not None
out["counts"] = {c.name: c.count for c in caches.list().caches}
out["pruned"] = caches.prune().count
denied = attrs.evolve(config, core=attrs.evolve(config.core, cache_dir=Path(sys.argv[2])))
try:
    PackageCache(denied).fetch(lock)
except CacheNotWritable as exc:
    out["error"] = str(exc)
print(json.dumps(out))
'''


def free_uid() -> int:
    for uid in range(54321, 54421):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise AssertionError("no free uid")  # pragma: no cover


def owned_by(uid: int, *roots: str) -> set[str]:
    found = subprocess.run(["find", *roots, "-xdev", "-uid", str(uid)], capture_output=True,
                           text=True, check=False).stdout
    return set(found.split())


@pytest.fixture
def user_home() -> Iterator[tuple[int, Path]]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to become another user")
    uid = free_uid()
    home = Path(tempfile.mkdtemp(prefix="ic-nonroot-", dir="/tmp"))
    os.chown(home, uid, uid)
    home.chmod(0o700)
    try:
        yield uid, home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def as_user(uid: int, home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"}
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           *argv], capture_output=True, text=True, env=env, cwd=home,
                          check=False)


def test_a_user_that_is_not_root_works_in_its_own_directories(
        user_home: tuple[int, Path]) -> None:
    uid, home = user_home
    probe = as_user(uid, home, sys.executable, "-c", "import imagecomposer")
    if probe.returncode != 0:
        pytest.skip(f"this interpreter cannot be run by another user: {probe.stderr[-200:]}")
    roots = ("/tmp", "/var/tmp", "/dev/shm", "/var/cache")
    before = owned_by(uid, *roots)
    package = home / "hello_1.0_amd64.deb"
    package.write_bytes(b"!<arch>\nnot really a package, but content-addressed\n")
    locked = home / "root-owned"  # the user cannot write in it
    locked.mkdir(mode=0o755)
    done = as_user(uid, home, sys.executable, "-c", SCRIPT, str(package),
                   str(locked / "cache"))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["uid"] == uid
    assert out["cache_dir"] == str(home / ".cache/imagecomposer")
    assert out["work_dir"] == str(home / ".local/state/imagecomposer/work")
    assert out["listed_before"] == 0
    # constructors and listings created nothing (the files the test put there are the root's)
    assert out["created_by_constructors"] == ["hello_1.0_amd64.deb", "root-owned"]
    assert out["fetched"].startswith(str(home / ".cache/imagecomposer/packages/objects/"))
    assert out["image_hit"] is True
    assert out["counts"] == {"packages": 1, "metadata": 0, "trees": 0, "initramfs": 0,
                             "images": 1}
    assert out["pruned"] == 0
    assert out["error"] == (
        f"Permission denied: cannot write the package cache in {locked / 'cache/packages'} "
        f"({locked / 'cache'}: Permission denied); set core.cache_dir (or "
        f"$IMAGECOMPOSER_CACHE_DIR) in the global configuration to a directory you can write")
    assert not (locked / "cache").exists()
    # the command line, as that user, lists the same
    listed = as_user(uid, home, sys.executable, "-m", "imagecomposer", "cache", "list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert str(home / ".cache/imagecomposer/packages") in listed.stdout
    # nothing of that user outside its home
    outside = {p for p in owned_by(uid, *roots) - before if not p.startswith(str(home))}
    assert outside == set()
    assert all(Path(p).is_relative_to(home) for p in owned_by(uid, str(home)))


def test_xdg_directories_are_used_when_set_and_absolute(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CACHE_HOME": "/srv/c", "XDG_STATE_HOME": "/srv/s"}
    assert default_cache_dir(env, euid=1000) == Path("/srv/c/imagecomposer")
    assert default_work_dir(env, euid=1000) == Path("/srv/s/imagecomposer/work")
    relative = {"HOME": str(tmp_path), "XDG_CACHE_HOME": "c", "XDG_STATE_HOME": "s"}
    assert default_cache_dir(relative, euid=1000) == tmp_path / ".cache/imagecomposer"
    assert default_work_dir(relative, euid=1000) == \
        tmp_path / ".local/state/imagecomposer/work"
    assert default_cache_dir(env, euid=0) == Path("/var/cache/imagecomposer")
    assert default_work_dir(env, euid=0) == Path("/var/tmp/imagecomposer")

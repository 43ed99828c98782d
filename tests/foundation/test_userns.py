"""Rootless builds (issue 14): an unprivileged user becomes root of a user namespace mapped
to its own uid and its subordinate ids; what is missing for that is one error naming the
commands that set it up, before any work.

The first tests read made-up /etc/subuid files and sysctls. The others create real users
(``tests/unprivileged.py``) and run this checkout as them: the ids files get on the host's
disk, a threaded process is refused, a user without subordinate ids gets one clear error
from ``imagecomposer build``, the sandbox tests pass again inside a user namespace, and
``cache clean`` removes trees holding subordinate ids.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from imagecomposer.foundation import userns
from imagecomposer.foundation.errors import PermissionDenied, RootlessUnavailable
from tests.unprivileged import User

SUBIDS = "# a comment\nalice:100000:65536\nbob:165536:1000\n1234:231072:65536\nbad line\n"


def everything(name: str) -> str | None:
    return f"/usr/bin/{name}"


def nothing(name: str) -> str | None:
    return None


def test_subordinate_ranges_by_name_or_uid(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text(SUBIDS)
    assert userns.subordinate_start(subuid, "alice", 1000) == 100000
    assert userns.subordinate_start(subuid, "bob", 1001) is None  # 1000 ids are too few
    assert userns.subordinate_start(subuid, "carol", 1234) == 231072  # by number
    assert userns.subordinate_start(tmp_path / "missing", "alice", 1000) is None
    assert userns.free_start([subuid, tmp_path / "missing"]) == 231072 + 65536


def test_plan_with_everything_in_place(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text(SUBIDS)
    (tmp_path / "subgid").write_text("alice:300000:65536\n")
    idmap = userns.plan(uid=1000, gid=1000, user="alice", subuid=tmp_path / "subuid",
                        subgid=tmp_path / "subgid", proc_sys=tmp_path, which=everything)
    assert idmap == userns.IdMap("alice", 1000, 1000, 100000, 300000)
    assert idmap.arguments("uid") == ["0", "1000", "1", "1", "100000", "65535"]
    assert idmap.arguments("gid") == ["0", "1000", "1", "1", "300000", "65535"]
    assert (idmap.host_uid(0), idmap.host_uid(100), idmap.host_gid(42)) == (1000, 100099,
                                                                             300041)


def test_plan_names_everything_missing_with_the_commands(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text(SUBIDS)
    (tmp_path / "subgid").write_text(SUBIDS)
    for name, value in (("kernel/unprivileged_userns_clone", "0"),
                        ("user/max_user_namespaces", "0"),
                        ("kernel/apparmor_restrict_unprivileged_userns", "1")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(value + "\n")
    with pytest.raises(RootlessUnavailable) as info:
        userns.plan(uid=1001, gid=1001, user="bob", subuid=tmp_path / "subuid",
                    subgid=tmp_path / "subgid", proc_sys=tmp_path, which=nothing)
    text = str(info.value)
    assert isinstance(info.value, PermissionDenied) and text.startswith("Permission denied")
    assert "bob has no range of 65535 subordinate uids in" in text
    assert "and none of gids in" in text
    for command in ("apt-get install uidmap",
                    "usermod --add-subuids 296608-362143 --add-subgids 296608-362143 bob",
                    "sysctl -w kernel.unprivileged_userns_clone=1",
                    "sysctl -w user.max_user_namespaces=15000",
                    "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"):
        assert f"\n  {command}\n" in text + "\n", command
    assert "docs/rootless.md" in text


def test_as_root_nothing_changes() -> None:
    if os.geteuid() != 0:
        pytest.skip("as root only")
    assert userns.become_root() is None and userns.entered() is None
    assert userns.become_root_if_set_up() is None


# --- as real unprivileged users -----------------------------------------------------------

ENTER = r'''
import json, os, sys, threading
from pathlib import Path
from imagecomposer.foundation import userns
from imagecomposer.foundation.errors import RootlessUnavailable

if sys.argv[1] == "thread":
    event = threading.Event()
    thread = threading.Thread(target=event.wait, daemon=True)
    thread.start()
    try:
        userns.become_root()
    except RootlessUnavailable as exc:
        print(json.dumps({"error": str(exc), "uid": os.geteuid()}))
    sys.exit(0)
idmap = userns.become_root()
here = Path(sys.argv[2])
(here / "root-file").write_text("root's\n")
(here / "shadow").write_text("shadow\n")
os.chown(here / "shadow", 0, 42)
os.chmod(here / "shadow", 0o640)
(here / "passwd").write_text("setuid\n")
os.chown(here / "passwd", 0, 0)
os.chmod(here / "passwd", 0o4755)
(here / "home").mkdir()
os.chown(here / "home", 1000, 1000)
print(json.dumps({"uid": os.geteuid(), "gid": os.getegid(), "entered": str(idmap),
                  "uid_map": Path("/proc/self/uid_map").read_text().split(),
                  "gid_map": Path("/proc/self/gid_map").read_text().split(),
                  "seen": [os.stat(here / n).st_uid for n in ("root-file", "home")]}))
'''


@pytest.mark.root
def test_a_user_becomes_root_of_a_namespace_of_its_subordinate_ids(
        rootless_user: User) -> None:
    user = rootless_user
    assert user.subuid is not None and user.subgid is not None
    here = user.home / "enter"
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir()
    os.chown(here, user.uid, user.gid)
    done = user.python("-c", ENTER, "enter", here)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["uid"], out["gid"]) == (0, 0)
    assert out["uid_map"] == ["0", str(user.uid), "1", "1", str(user.subuid), "65535"]
    assert out["gid_map"] == ["0", str(user.gid), "1", "1", str(user.subgid), "65535"]
    assert out["seen"] == [0, 1000]  # inside, the ids are the image's
    # on the host's disk: root's files are the user's, the others subordinate ids
    files = {name: (here / name).stat() for name in ("root-file", "shadow", "passwd", "home")}
    assert (files["root-file"].st_uid, files["root-file"].st_gid) == (user.uid, user.gid)
    assert (files["shadow"].st_uid, files["shadow"].st_gid) == (user.uid, user.subgid + 41)
    assert files["shadow"].st_mode & 0o7777 == 0o640
    assert files["passwd"].st_mode & 0o7777 == 0o4755  # setuid survives
    assert (files["home"].st_uid, files["home"].st_gid) == (user.subuid + 999,
                                                            user.subgid + 999)


@pytest.mark.root
def test_the_test_users_touch_no_host_file(rootless_user: User) -> None:
    """The user exists in its own mount namespace only: newuidmap and getent see it there,
    the host's /etc knows nothing of it (a session that dies leaves no user behind)."""
    user = rootless_user
    for name in ("passwd", "group", "subuid", "subgid"):
        assert not any(line.startswith(f"{user.name}:")
                       for line in Path("/etc", name).read_text().splitlines()), name
    done = user.run(["sh", "-c", f"id -un; getent passwd {user.name}; "
                     f"grep '^{user.name}:' /etc/subuid"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        user.name, f"{user.name}:x:{user.uid}:{user.gid}::{user.home}:/bin/sh",
        f"{user.name}:{user.subuid}:65536"]


@pytest.mark.root
def test_a_threaded_process_is_refused_and_left_as_it_was(rootless_user: User) -> None:
    done = rootless_user.python("-c", ENTER, "thread")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["uid"] == rootless_user.uid
    assert out["error"].startswith("Permission denied") and "build_many" in out["error"]


@pytest.mark.root
def test_without_subordinate_ids_one_clear_error_before_any_work(plain_user: User) -> None:
    user = plain_user
    specs = user.home / "specs"
    if not specs.exists():
        shutil.copytree(user.checkout / "examples", specs)
        subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", specs], check=True)
    done = user.imagecomposer("build", specs / "debian-12-minimal.yml", timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"ERROR: Permission denied: building as {user.name} "
                                f"(uid {user.uid}, not root)")
    assert re.search(rf"\n  usermod --add-subuids \d+-\d+ --add-subgids \d+-\d+ "
                     rf"{user.name}\n", done.stderr), done.stderr
    assert "has no range of 65535 subordinate uids in /etc/subuid" in done.stderr
    # before any work: no workspace, no cache, no download
    assert not (user.home / ".local/state/imagecomposer").exists()
    assert not (user.home / ".cache/imagecomposer").exists()
    assert "packages:" not in done.stderr and "validate:" not in done.stderr


# What acts on image trees: the sandbox (capabilities, no host path, no remount, no device,
# no mount, no sysctl, network only when asked, the host name), LUKS2 (cryptsetup's lock),
# disk assembly from trees, users and SSH keys (useradd --root, owners, modes), paths and
# files with owners, the in-tree file primitives; and what the last stages run: signing
# (detached signatures, Secure Boot sbsign) and every output format.
IN_NAMESPACE = ("tests/compose/test_sandbox.py", "tests/disk/test_luks.py",
                "tests/disk/test_disk_assemble.py", "tests/compose/test_users_ssh.py",
                "tests/compose/test_paths_system.py",
                "tests/compose/test_files_services_network.py", "tests/rootfs",
                "tests/sign", "tests/export/test_exporter.py")


@pytest.mark.root
def test_the_tree_tests_pass_as_root_of_a_user_namespace(rootless_user: User) -> None:
    """The hermetic tests of everything that acts on an image tree, again as the
    unprivileged user, the pytest process root of its user namespace
    (IMAGECOMPOSER_TEST_USERNS, see tests/conftest.py), as a rootless build runs."""
    checkout = rootless_user.checkout
    done = rootless_user.python(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", checkout,
        "--basetemp", rootless_user.home / "pytest",  # removed with the user, not in /tmp
        "-c", checkout / "pyproject.toml", "-m", "not network and not boot and not slow",
        *(checkout / module for module in IN_NAMESPACE),
        env={"IMAGECOMPOSER_TEST_USERNS": "1"}, timeout=600)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    match = re.fullmatch(r"(\d+) passed(, (\d+) skipped)? in [\d.]+s( \(.*\))?", summary)
    assert match is not None, summary
    # LVM on LUKS opens its result with a loop device to check it: root of the host only
    assert int(match.group(1)) >= 100 and int(match.group(3) or 0) <= 1, summary


TREE = r'''
import os, sys
from pathlib import Path
from imagecomposer.cache.trees import TreeCache
from imagecomposer.config import load_config
from imagecomposer.foundation import userns

config = load_config().config
userns.become_root(probe=False)
tree = Path(sys.argv[1])
(tree / "var/cache/man").mkdir(parents=True)
(tree / "var/cache/man/index.db").write_text("x")
for path in (tree / "var/cache/man", tree / "var/cache/man/index.db"):
    os.chown(path, 6, 12)
os.chmod(tree / "var/cache/man", 0o755)
print(TreeCache.for_config(config).store("k", tree))
'''


@pytest.mark.root
def test_cache_clean_removes_trees_holding_subordinate_ids(rootless_user: User) -> None:
    user = rootless_user
    tree = user.home / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir()
    os.chown(tree, user.uid, user.gid)
    done = user.python("-c", TREE, tree)
    assert done.returncode == 0, done.stderr
    entry = Path(done.stdout.strip())
    assert (entry / "tree/var/cache/man").stat().st_uid == user.subuid + 5  # man's, on the host
    cleaned = user.imagecomposer("cache", "clean", "--cache", "trees")
    assert cleaned.returncode == 0, cleaned.stderr
    assert not entry.exists()

"""imagecomposer.foundation.rootfs: a tree as a filesystem root, with openat2 and with the fallback
walk.

Every hostile test builds its own tree with planted symlinks pointing at host files it made
in its own temporary directory, and checks those host files afterwards.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagecomposer.foundation import rootfs
from imagecomposer.foundation.errors import ImagePathError, SourceNotAllowed
from imagecomposer.foundation.rootfs import Root, allowed_source, resolve


@pytest.fixture(params=["openat2", "walk"])
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with openat2 and again with the component walk (openat2 said ENOSYS)."""
    if request.param == "openat2" and rootfs.SYS_OPENAT2 is None:
        pytest.skip("no openat2 system call number for this architecture")
    monkeypatch.setattr(resolve, "_use_openat2", request.param == "openat2")
    return str(request.param)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """Host files a hostile tree points at: they must never change."""
    outside = tmp_path / "host"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret").write_text("host secret\n")
    (outside / "secret").chmod(0o600)
    return outside


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "lib").symlink_to("/usr/lib")  # merged /usr: absolute, inside the tree
    return tree


def untouched(host: Path) -> None:
    assert (host / "secret").read_text() == "host secret\n"
    assert (host / "secret").stat().st_mode & 0o777 == 0o600
    assert list((host / "dir").iterdir()) == []
    assert sorted(p.name for p in host.iterdir()) == ["dir", "secret"]


def leftovers(tree: Path) -> list[Path]:
    return [p for p in tree.rglob("*") if p.name.startswith(rootfs.TMP_PREFIX)]


def dotdots(tree: Path, target: Path) -> str:
    """A relative symlink target climbing far above ``tree`` to ``target`` on the host."""
    return "../" * (len(tree.parts) + 3) + str(target).lstrip("/")


# --- resolution -------------------------------------------------------------------------------


def test_paths_resolve_as_in_a_chroot(resolution: str, tree: Path, host: Path) -> None:
    (tree / "usr/lib/up").symlink_to("../../../../../../../etc")
    (tree / "etc/abs").symlink_to(host)
    with Root(tree) as root:
        assert root.host_path("/lib") == tree / "usr/lib"
        assert root.host_path("lib/up", follow=False) == tree / "usr/lib/up"
        assert root.host_path("/lib/up") == tree / "etc"  # ".." stops at the root
        assert root.host_path("/../../..") == tree
        assert not root.exists("/etc/abs")  # the host directory is not in the tree
        assert root.is_symlink("/etc/abs") and root.readlink("/etc/abs") == str(host)
        assert root.is_dir("/lib") and not root.is_file("/lib")
        assert root.listdir("/") == ["etc", "lib", "usr"]


def test_symlink_loops_are_an_error(resolution: str, tree: Path) -> None:
    (tree / "a").symlink_to("b")
    (tree / "b").symlink_to("/a")
    with Root(tree) as root:
        assert not root.exists("/a/x")
        with pytest.raises(ImagePathError, match=r"cannot read /a/x in the tree .*") as caught:
            root.read_bytes("/a/x")
        assert caught.value.errno == errno.ELOOP
        with pytest.raises(ImagePathError) as caught:
            root.write("/a/x", "x")
        assert caught.value.errno == errno.ELOOP


def test_the_walk_answers_like_openat2(tree: Path, host: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if rootfs.SYS_OPENAT2 is None:
        pytest.skip("no openat2 here to compare with")
    (tree / "etc/rel").symlink_to("../usr/./lib/")
    (tree / "etc/host").symlink_to(dotdots(tree, host / "secret"))
    (tree / "usr/lib/dangling").symlink_to("/nowhere/at/all")
    (tree / "usr/lib/file").write_text("f")
    probes = ["/", "/etc", "/lib", "/lib/file", "/etc/rel/file", "/etc/rel/../etc", "..",
              "/etc/host", "/usr/lib/dangling", "/lib/file/x", "/etc//rel/./file", "/lib/.."]

    def answers() -> list[tuple[str, bool]]:
        out = []
        with Root(tree) as root:
            for probe in probes:
                for follow in (True, False):
                    try:
                        out.append((str(root.host_path(probe, follow=follow)), follow))
                    except ImagePathError as exc:
                        out.append((f"errno {exc.errno}", follow))
        return out

    monkeypatch.setattr(resolve, "_use_openat2", True)
    with_openat2 = answers()
    monkeypatch.setattr(resolve, "_use_openat2", False)
    assert answers() == with_openat2
    untouched(host)


def test_enosys_switches_to_the_walk(tree: Path, host: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def no_openat2(*args: object, **kwargs: object) -> int:
        calls.append("openat2")
        raise OSError(errno.ENOSYS, "Function not implemented")

    walk = resolve._walk

    def counting_walk(*args: object) -> int:
        calls.append("walk")
        return walk(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(resolve, "_use_openat2", True)
    monkeypatch.setattr(resolve, "openat2", no_openat2)
    monkeypatch.setattr(resolve, "_walk", counting_walk)
    (tree / "etc/hostname").symlink_to(host / "secret")
    with Root(tree) as root:
        root.write("/etc/hostname", "image\n")
        assert root.read_text("/etc/hostname") == "image\n"
    assert calls[0] == "openat2" and calls.count("openat2") == 1  # asked once, then walked
    assert calls.count("walk") >= 2 and resolve._use_openat2 is False
    untouched(host)


# --- writes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_write_replaces_a_planted_symlink(resolution: str, tree: Path, host: Path,
                                          kind: str) -> None:
    target = str(host / "secret") if kind == "absolute" else dotdots(tree / "etc",
                                                                     host / "secret")
    (tree / "etc/hostname").symlink_to(target)
    with Root(tree) as root:
        written = root.write("/etc/hostname", "image\n", mode=0o640, uid=0, gid=4)
    assert written == tree / "etc/hostname"
    assert not written.is_symlink() and written.read_text() == "image\n"
    st = written.stat()
    assert (st.st_mode & 0o777, st.st_gid) == (0o640, 4)
    assert leftovers(tree) == []
    untouched(host)


def test_a_directory_symlink_in_the_middle_resolves_inside(resolution: str, tree: Path,
                                                           host: Path) -> None:
    (tree / "etc/ssh").mkdir()
    (tree / "etc/ssh/sshd_config.d").symlink_to(host / "dir")
    (tree / "etc/up").symlink_to(dotdots(tree / "etc", host / "dir"))
    with Root(tree) as root:
        root.write("/etc/ssh/sshd_config.d/50-x.conf", "PermitRootLogin no\n")
        root.write("/etc/up/file", "x")
        root.symlink("/etc/up/link", "/etc/passwd")
        root.mkdir("/etc/ssh/sshd_config.d/sub/deeper", 0o700)
        root.copy_file_in(host / "secret", "/etc/up/copied", mode=0o644)
    inside = tree / str(host / "dir").lstrip("/")
    assert (inside / "50-x.conf").read_text() == "PermitRootLogin no\n"
    assert (inside / "file").read_text() == "x"
    assert (inside / "link").readlink() == Path("/etc/passwd")
    assert (inside / "sub/deeper").stat().st_mode & 0o777 == 0o700
    assert (inside / "copied").read_text() == "host secret\n"
    untouched(host)


def test_mkdir_follows_a_dangling_symlink_inside(resolution: str, tree: Path,
                                                 host: Path) -> None:
    (tree / "var").mkdir()
    (tree / "var/lock").symlink_to("/run/lock")
    (tree / "var/out").symlink_to(host / "dir" / "made")
    with Root(tree) as root:
        assert root.mkdir("/var/lock/app") == tree / "run/lock/app"
        assert root.mkdir("/var/out/x") == tree / str(host / "dir/made/x").lstrip("/")
        with pytest.raises(ImagePathError, match="symlink"):
            root.mkdir("/var/lock", follow=False)
    untouched(host)


def test_chown_and_chmod_never_act_through_a_symlink(resolution: str, tree: Path,
                                                      host: Path) -> None:
    (tree / "etc/link").symlink_to(host / "secret")
    (tree / "etc/file").write_text("f")
    with Root(tree) as root:
        root.chown("/etc/link", 1234, 1234)
        with pytest.raises(ImagePathError, match="symlink"):
            root.chmod("/etc/link", 0o777)
        root.chmod("/etc/file", 0o604)
        root.chown("/etc/file", 1234, 4321)
    assert (tree / "etc/link").lstat().st_uid == 1234  # the link itself
    assert (host / "secret").stat().st_uid == os.geteuid()
    st = (tree / "etc/file").stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o604, 1234, 4321)
    untouched(host)


def test_remove_rename_and_move_out_act_on_the_name(resolution: str, tree: Path, host: Path,
                                                    tmp_path: Path) -> None:
    (tree / "etc/link").symlink_to(host / "secret")
    (tree / "etc/dirlink").symlink_to(host / "dir")
    (tree / "srv").mkdir()
    (tree / "srv/data").write_text("d")
    with Root(tree) as root:
        root.rename("/etc/link", "/etc/moved")
        assert root.remove("/etc/moved") and not root.remove("/etc/moved")
        assert not root.remove("/no/such/dir/file")
        with pytest.raises(ImagePathError, match="not a directory"):
            root.move_out("/etc/dirlink", tmp_path / "out")
        root.move_out("/srv", tmp_path / "srv-part")
    assert (tmp_path / "srv-part/data").read_text() == "d"
    assert not (tree / "srv").exists() and not (tmp_path / "out").exists()
    untouched(host)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(resolution: str,
                                                             tree: Path) -> None:
    (tree / "etc/d").mkdir()
    with Root(tree) as root, pytest.raises(ImagePathError, match="Is a directory"):
        root.write("/etc/d", "x")
    assert (tree / "etc/d").is_dir() and leftovers(tree) == []


def test_reads_never_leave_the_tree(resolution: str, tree: Path, host: Path) -> None:
    (tree / "etc/shadow").symlink_to(host / "secret")
    (tree / "etc/up").symlink_to(dotdots(tree / "etc", host / "secret"))
    fifo = tree / "etc/fifo"
    os.mkfifo(fifo)
    with Root(tree) as root:
        for path in ("/etc/shadow", "/etc/up"):
            assert not root.exists(path)
            with pytest.raises(ImagePathError, match="No such file"):
                root.read_bytes(path)
        with pytest.raises(ImagePathError, match="not a regular file"):
            root.read_bytes("/etc/fifo")  # refused without opening: it would block


def test_copy_to_another_root_reads_and_writes_inside_each(resolution: str, tree: Path,
                                                           host: Path, tmp_path: Path) -> None:
    (tree / "boot").mkdir()
    (tree / "boot/vmlinuz-1").symlink_to(host / "secret")  # a planted "kernel"
    (tree / "boot/vmlinuz-2").write_bytes(b"MZkernel")
    esp = tmp_path / "esp"
    esp.mkdir()
    (esp / "EFI").symlink_to(host / "dir")
    with Root(tree) as image, Root(esp) as esp_root:
        with pytest.raises(ImagePathError):
            image.copy_to("/boot/vmlinuz-1", esp_root, "/k1")
        image.copy_to("/boot/vmlinuz-2", esp_root, "/EFI/linux", mode=0o644)
    assert (esp / str(host / "dir/linux").lstrip("/")).read_bytes() == b"MZkernel"
    assert not (esp / "k1").exists()
    untouched(host)


@pytest.mark.root
def test_a_proc_magic_link_is_never_followed(resolution: str, tree: Path, host: Path) -> None:
    """With procfs mounted in the tree (as during a chroot run, here in a private mount
    namespace), ``/proc/self/root`` is a magic link to the real root: openat2 refuses it
    (RESOLVE_NO_MAGICLINKS), the walk reads it as the text "/" (the tree's root)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    (tree / "proc").mkdir()
    (tree / "etc/hostname").symlink_to(f"/proc/self/root{host}/secret")
    script = (
        "import sys, subprocess\n"
        "from imagecomposer.foundation import rootfs\n"
        "from imagecomposer.foundation.rootfs import resolve\n"
        "from imagecomposer.foundation.errors import ImagePathError\n"
        f"resolve._use_openat2 = {resolution == 'openat2'}\n"
        "tree, secret = sys.argv[1], sys.argv[2]\n"
        "subprocess.run(['mount', '-t', 'proc', 'proc', tree + '/proc'], check=True)\n"
        "with rootfs.Root(tree) as root:\n"
        "    for path in ('/proc/self/root' + secret, '/proc/self/cwd/x', '/etc/hostname/x',"
        " '/proc/1/root' + secret):\n"
        "        try:\n"
        "            root.write(path, 'pwned')\n"
        "            print('wrote', root.host_path(path))\n"
        "        except ImagePathError as exc:\n"
        "            print('refused', exc.errno)\n"
    )
    # --pid --fork: a proc can be mounted in a user namespace (the tests run so as a user
    # too) only for a PID namespace of its own
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                           sys.executable,
                           "-c", script, str(tree), str(host / "secret")],
                          capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert len(lines) == 4
    if resolution == "openat2":
        assert lines[:2] == [f"refused {errno.ELOOP}"] * 2
    for line in lines:
        assert line.startswith("refused") or line.startswith(f"wrote {tree}/"), line
    untouched(host)


# --- copying a host directory in ------------------------------------------------------------


def test_the_issue_attack_two_overlays_never_write_on_the_host(resolution: str, tree: Path,
                                                               host: Path,
                                                               tmp_path: Path) -> None:
    """Entry A copies a directory holding ``evil -> <host file>`` to /opt/esc; entry B copies
    a directory holding ``esc/evil`` to /opt: B's file replaces the link in the image."""
    a = tmp_path / "a"
    a.mkdir()
    (a / "evil").symlink_to(host / "secret")
    b = tmp_path / "b"
    (b / "esc").mkdir(parents=True)
    (b / "esc/evil").write_text("pwned\n")
    with Root(tree) as root:
        root.copy_tree_in(a, "/opt/esc")
        assert (tree / "opt/esc/evil").readlink() == host / "secret"  # copied as a link
        root.copy_tree_in(b, "/opt")
    assert (tree / "opt/esc/evil").read_text() == "pwned\n"
    assert not (tree / "opt/esc/evil").is_symlink()
    untouched(host)


def test_copy_tree_in_keeps_modes_links_and_merges_through_inner_symlinks(
        resolution: str, tree: Path, host: Path, tmp_path: Path) -> None:
    src = tmp_path / "overlay"
    (src / "lib/firmware").mkdir(parents=True)
    (src / "lib/firmware/blob").write_bytes(b"\0fw")
    (src / "etc/app").mkdir(parents=True)
    (src / "etc/app/run.sh").write_text("#!/bin/sh\n")
    (src / "etc/app/run.sh").chmod(0o750)
    (src / "etc/app/out").symlink_to(host / "secret")  # the image's own link, kept as is
    (src / "etc/app/rel").symlink_to("run.sh")
    (src / "etc/dir").mkdir()
    (src / "etc/dir/f").write_text("f")
    os.utime(src / "etc/app/run.sh", ns=(1_000_000_000, 1_000_000_000))
    (tree / "etc/dir").symlink_to(host / "dir")  # a planted link where a directory goes
    (tree / "etc/app").mkdir()
    (tree / "etc/app/run.sh").symlink_to(host / "secret")
    with Root(tree) as root:
        top = root.copy_tree_in(src, "/", mode=0o755, uid=1200, gid=1300)
    assert top == tree
    assert (tree / "usr/lib/firmware/blob").read_bytes() == b"\0fw"  # /lib -> /usr/lib kept
    assert (tree / "lib").is_symlink()
    run = tree / "etc/app/run.sh"
    assert not run.is_symlink() and run.read_text() == "#!/bin/sh\n"
    st = run.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o750, 1200, 1300)
    assert st.st_mtime_ns == 1_000_000_000
    assert (tree / "etc/app/out").readlink() == host / "secret"
    assert (tree / "etc/app/out").lstat().st_uid == 1200
    assert (tree / "etc/app/rel").readlink() == Path("run.sh")
    # the link at /etc/dir resolved to nothing in the tree: replaced by a real directory
    assert (tree / "etc/dir").is_dir() and not (tree / "etc/dir").is_symlink()
    assert (tree / "etc/dir/f").read_text() == "f"
    assert leftovers(tree) == []
    untouched(host)


def test_copy_tree_in_refuses_special_files(resolution: str, tree: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "fifo")
    with Root(tree) as root, pytest.raises(ImagePathError, match="not a regular file"):
        root.copy_tree_in(src, "/opt")


# --- where sources may come from ------------------------------------------------------------


@pytest.fixture
def spec_dir(tmp_path: Path, host: Path) -> Iterator[Path]:
    spec = tmp_path / "spec"
    (spec / "files/sub").mkdir(parents=True)
    (spec / "files/ok.conf").write_text("ok")
    (spec / "files/alias").symlink_to("ok.conf")
    (spec / "files/shadow").symlink_to(host / "secret")
    (spec / "files/escape").symlink_to("../../host")
    (spec / "files/sub/out").symlink_to(host / "secret")  # inside a copied dir: kept a link
    yield spec


def test_allowed_source(spec_dir: Path, host: Path) -> None:
    roots = (spec_dir,)
    files = spec_dir / "files"
    assert allowed_source(files / "ok.conf", roots) == files / "ok.conf"
    assert allowed_source(files / "alias", roots) == files / "ok.conf"
    assert allowed_source(files / "sub", roots) == files / "sub"
    assert allowed_source(spec_dir, roots) == spec_dir
    for bad in (files / "shadow", files / "escape", files / "escape/secret",
                spec_dir / "../host/secret", host / "secret", Path("/etc/shadow")):
        with pytest.raises(SourceNotAllowed, match=r"file source .* is outside the "
                                                   r"directories sources may come from"):
            allowed_source(bad, roots)
    with pytest.raises(SourceNotAllowed, match=r"shadow \(resolves to .*host/secret\)"):
        allowed_source(files / "shadow", roots)
    assert allowed_source(host / "secret", (spec_dir, host)) == host / "secret"
    assert allowed_source(files / "missing", roots) == files / "missing"
    (files / "loop").symlink_to("loop")
    with pytest.raises(SourceNotAllowed, match="cannot be resolved"):
        allowed_source(files / "loop", roots)
    with pytest.raises(SourceNotAllowed, match=r"\(none\)"):
        allowed_source(files / "ok.conf", ())

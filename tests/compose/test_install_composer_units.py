"""Installer and Composer logic that needs neither root nor network."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest
from conftest import make_layout

from imagecomposer.compose import composer
from imagecomposer.compose.layout import PlannedPartition
from imagecomposer.families import family
from imagecomposer.families.deb import install as dpkg_install
from imagecomposer.foundation import pivot_exec
from imagecomposer.foundation import sandbox as chroot
from imagecomposer.foundation.errors import (
    ComposeError,
    InsufficientDiskSpace,
    LockError,
    PermissionDenied,
)
from imagecomposer.foundation.events import DiskStep, Event, Progress
from imagecomposer.lock import Lock, LockedPackage, LockedRepository
from imagecomposer.spec.model import Base, Disk, Image, Partition, Spec


def pkg(name: str, *, essential: bool = False, priority: str | None = "optional",
        depends: tuple[str, ...] = ()) -> LockedPackage:
    return LockedPackage(name=name, version="1", arch="amd64", repository="debian",
                         url=f"http://m.invalid/{name}.deb", sha256="0" * 64, size=1000,
                         essential=essential, priority=priority, depends=depends)


LOCK = Lock(
    os="debian", version="12", arch="x86_64", kind="deb",
    repositories=(LockedRepository(name="debian", url="http://m.invalid", kind="deb"),),
    packages=(pkg("libc6", priority="required"), pkg("libzstd1"), pkg("libsel"),
              pkg("dpkg", essential=True, depends=("libc6", "libzstd1")),
              pkg("coreutils", essential=True, depends=("libsel",)), pkg("vim"),
              pkg("vim-runtime")))


def test_essential_set_is_the_closure_in_transaction_order() -> None:
    names = [p.name for p in dpkg_install.essential_set(LOCK)]
    assert names == ["libc6", "libzstd1", "libsel", "dpkg", "coreutils"]


def test_missing_package_files(tmp_path: Path) -> None:
    files = {p.name: tmp_path / family(p.kind).filename(p) for p in LOCK.packages}
    for name in ("libc6", "dpkg", "coreutils", "libzstd1", "libsel"):
        files[name].write_bytes(b"!<arch>")
    del files["vim-runtime"]
    with pytest.raises(LockError, match=r"2 locked package.*vim, vim-runtime"):
        dpkg_install.package_files(LOCK, files)


def test_failed_packages_from_dpkg_output() -> None:
    output = (
        "Setting up foo (1.0) ...\nboom\n"
        "dpkg: error processing package foo (--configure):\n"
        " installed foo package post-installation script subprocess returned error exit "
        "status 3\nErrors were encountered while processing:\n foo\n bar\n")
    assert dpkg_install.failed_packages(output) == ["foo", "bar"]
    unpack = ("dpkg: error processing archive /run/imagecomposer/packages/0/baz_1_amd64.deb "
              "(--unpack):\n new baz package pre-installation script subprocess returned "
              "error exit status 1\n")
    assert dpkg_install.failed_packages(unpack) == ["baz"]
    noisy = ("Setting up foo (1.0) ...\nboom\ndpkg: error processing package foo (--configure):\n"
             " installed foo package post-installation script subprocess returned error exit "
             "status 3\n" + "Processing triggers for libc-bin ...\n" * 40)
    excerpt = dpkg_install.failure_excerpt(noisy, ["foo"])
    assert excerpt.startswith("Setting up foo (1.0) ...\nboom\ndpkg: error processing package foo")


def test_chroot_command_line_isolates_the_child() -> None:
    argv = chroot.chroot_argv(Path("/t"), ["dpkg", "--configure", "-a"], {"A": "1"},
                              [(Path("/host/debs"), "/run/imagecomposer/packages/0")],
                              copies=[(Path("/host/lib.so"), "/run/imagecomposer/lib.so")])
    assert argv[:9] == ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                        "--kill-child", "--uts", "--ipc"]
    assert "--net" in argv
    script = argv[argv.index("-c") + 1]
    assert 'mount -t proc' in script and "for d in null zero full random urandom tty;" in script
    assert 'mount --bind "/dev/$d" "$I/dev/$d"' in script  # the host's nodes, read-only:
    assert 'mount -o remount,bind,ro,nosuid,noexec "$I/dev/$d"' in script  # no mknod
    assert "mknod" not in script and "console" not in script  # no host console
    assert "mount --bind '/host/debs' \"$I\"'/run/imagecomposer/packages/0'" in script
    assert ("mount -o remount,bind,ro,nosuid,nodev,noexec \"$I\"'/run/imagecomposer/packages/0'"
            in script)
    assert "cp -- '/host/lib.so' \"$I\"'/run/imagecomposer/lib.so'" in script
    # copies go in before the tmpfs turns read-only, binds after
    assert script.index("cp --") < script.index('remount,ro,nosuid,nodev "$I/run/imagecomposer"')
    helper = argv[argv.index("/t") + 1:]
    assert helper[1:4] == ["-I", "-S", "-B"] and helper[4].endswith("pivot_exec.py")
    assert helper[5] == "/t" and helper[6] == ",".join(chroot.KEPT_CAPABILITIES)
    assert "A=1" in helper and "DEBIAN_FRONTEND=noninteractive" in helper
    assert helper[-4:] == ["--", "dpkg", "--configure", "-a"]
    assert "--net" not in chroot.chroot_argv(Path("/t"), ["true"], network=True)


def test_sandbox_paths_stay_under_run_imagecomposer() -> None:
    for target in ("/etc/x", "/run/imagecomposer/../../etc", "/run/imagecomposerx/a"):
        with pytest.raises(ComposeError, match="not a plain path"):
            chroot.setup_script(copies=[(Path("/h"), target)])


def test_host_tool_command_line() -> None:
    argv = chroot.host_tool_argv(Path("/w/tree"), ["rpm", "--root", "/w/tree", "-i", "/d/a.rpm"],
                                 host_paths=[Path("/d")], capabilities=("sys_chroot",))
    assert "--net" in argv
    script = argv[argv.index("-c") + 1]
    assert 'mount --bind /usr "$R/usr"' in script and 'mount -o remount,ro,nosuid,nodev "$R"' \
        in script
    assert "mount --bind '/d' \"$R\"'/d'" in script
    helper = argv[argv.index("/w/tree") + 1:]
    assert helper[5] == "/w/tree/run"  # the tmpfs root, on the tree's /run
    assert helper[6] == ",".join((*chroot.KEPT_CAPABILITIES, "sys_chroot"))
    for bad in (Path("relative"), Path("/usr/src/tree"), Path("/etc/x")):
        with pytest.raises(ComposeError):
            chroot.host_tool_argv(bad, ["true"])
    with pytest.raises(ValueError, match="unknown capability"):
        chroot.host_tool_argv(Path("/w/tree"), ["true"], capabilities=("sys_everything",))


def test_pivot_exec_arguments() -> None:
    root, keep, env, argv = pivot_exec.parse(["/t", "chown,kill", "A=1", "B=x=y", "--", "ls",
                                              "--", "-l"])
    assert (root, keep, env, argv) == ("/t", 1 | 1 << 5, {"A": "1", "B": "x=y"},
                                       ["ls", "--", "-l"])
    for bad in (["/t", "chown", "--"], ["/t", "chown", "A", "--", "ls"], ["/t", "x", "--", "ls"]):
        with pytest.raises(ValueError):
            pivot_exec.parse(bad)


def test_chroot_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chroot.os, "geteuid", lambda: 1000)
    with pytest.raises(PermissionDenied, match="needs root"):
        chroot.run_in_chroot(tmp_path, ["true"])


def spec_with(disk: Disk | None = None) -> Spec:
    return Spec(image=Image(name="demo", base=Base(os="debian", version="12")),
                disk=disk or Disk())


def test_default_disk_and_seed() -> None:
    disk = composer.default_disk(spec_with())
    assert [(p.name, p.type, p.size) for p in disk.partitions] == [
        ("esp", "esp", 256 << 20), ("root", "root", None)]
    given = Disk(partitions=(Partition(name="r", type="root", size=None),))
    assert composer.default_disk(spec_with(given)) == given
    assert composer.layout_seed(spec_with(), LOCK) == composer.layout_seed(spec_with(), LOCK)
    other = attrs.evolve(LOCK, packages=LOCK.packages[:-1])
    assert composer.layout_seed(spec_with(), LOCK) != composer.layout_seed(spec_with(), other)


def test_insufficient_disk_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Usage:
        free = 10 << 20

    monkeypatch.setattr(composer.shutil, "disk_usage", lambda path: Usage())
    with pytest.raises(InsufficientDiskSpace,
                       match=r"Insufficient disk space: need \d+ MiB, have 10 MiB"):
        composer.check_free_space(tmp_path, LOCK, spec_with())


def test_split_partitions_moves_mounted_content_out(tmp_path: Path) -> None:
    tree = tmp_path / "root"
    (tree / "var/log").mkdir(parents=True)
    (tree / "var/log/dpkg.log").write_text("log")
    (tree / "var/lib").mkdir()
    (tree / "home").mkdir()
    var = PlannedPartition(name="var", type="var", type_guid="x", filesystem="ext4",
                           start=0, size=1, partuuid="p", fsuuid="f", number=3,
                           mountpoint="/var")
    home = attrs.evolve(var, name="home", mountpoint="/home", number=4)
    trees = composer.split_partitions(tree, make_layout(var, home))
    assert trees == {"var": tmp_path / "part-var", "home": tmp_path / "part-home"}
    assert (tmp_path / "part-var/log/dpkg.log").read_text() == "log"
    assert (tree / "var").is_dir() and not any((tree / "var").iterdir())


def test_split_partitions_keeps_the_mount_points_label(tmp_path: Path) -> None:
    """The empty mount point left in the root tree keeps its SELinux label (issue 12:
    labelled at build time, an unlabelled /var would be unlabeled_t under the mount)."""
    tree = tmp_path / "root"
    (tree / "var/log").mkdir(parents=True)
    label = b"system_u:object_r:var_t:s0\0"
    os.setxattr(tree / "var", "security.selinux", label)
    var = PlannedPartition(name="var", type="var", type_guid="x", filesystem="ext4",
                           start=0, size=1, partuuid="p", fsuuid="f", number=3,
                           mountpoint="/var")
    composer.split_partitions(tree, make_layout(var))
    assert os.getxattr(tree / "var", "security.selinux") == label
    assert os.getxattr(tmp_path / "part-var", "security.selinux") == label


def test_dpkg_output_lines_become_progress_events() -> None:
    """dpkg's "Unpacking"/"Setting up" lines, read as they come, are the install's progress
    (issue 12): one event per package, capped at the total."""
    events: list[Event] = []
    seen = dpkg_install._counter(events.append, "unpacking", "Unpacking ", 2)
    assert seen is not None
    for line in ("Preparing to unpack .../libc6_2.36_amd64.deb ...",
                 "Unpacking libc6:amd64 (2.36-9) ...", "Selecting previously unselected x",
                 "Unpacking bash (5.2.15-2) ...", "Unpacking extra (1) ..."):
        seen(line)
    assert events == [Progress("unpacking", 1, 2, "packages"),
                      Progress("unpacking", 2, 2, "packages"),
                      Progress("unpacking", 2, 2, "packages")]
    assert dpkg_install._counter(None, "configuring", "Setting up ", 2) is None


def test_deb_family_install_forwards_the_events(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """The Composer's events reach dpkg's installer through the deb Family (its progress
    events), not dropped at the registry."""
    seen: dict[str, object] = {}

    def fake_install(lock: Lock, packages: object, tree: Path, **kwargs: object) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(dpkg_install, "install", fake_install)
    events: list[Event] = []
    family("deb").install(LOCK, {}, tmp_path, timeout=5.0, events=events.append)
    assert seen == {"timeout": 5.0, "events": events.append, "epoch": None, "parallel": 1,
                    "pre_install": None}


def test_disk_assembly_steps_are_progress_to_the_end() -> None:
    """Disk assembly is one of the long steps with a progress display (issue 12): each step
    starting completes the one before it, and the end is reported as complete."""
    events: list[Event] = []
    steps = composer.DiskSteps(events.append, 3)
    names = ("partition table", "ext4 for partition 'root'", "vfat for partition 'esp'")
    for what in names:
        steps(what)
    steps.finished()
    progress = [(e.done, e.total) for e in events if isinstance(e, Progress)]
    assert progress == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert {e.what for e in events if isinstance(e, Progress)} == {"assembling the disk"}
    assert tuple(e.what for e in events if isinstance(e, DiskStep)) == names

"""User scripts (environment, failures), apt sources from the lock, fstab from the layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from conftest import make_layout

from imagecomposer.compose.configure import fstab, scripts
from imagecomposer.compose.layout import PlannedPartition
from imagecomposer.families.deb import image_sources as apt_sources
from imagecomposer.foundation.errors import ComposeError, ScriptFailed
from imagecomposer.lock import Lock, LockedRepository
from imagecomposer.spec.model import Spec


def test_scripts_run_in_order_with_documented_environment(
        fake_tree: Path, spec: Spec, tmp_path: Path) -> None:
    one = tmp_path / "one.sh"
    two = tmp_path / "two.py"
    one.write_text("echo one\n")
    two.write_text("#!/usr/bin/python3\nprint('two')\n")
    calls: list[dict[str, Any]] = []
    scripts.run_scripts(fake_tree, spec, "post-install", (one, two),
                        chroot=lambda tree, argv, **kw: calls.append({"argv": argv, **kw}))
    assert [c["env"]["IMAGECOMPOSER_SCRIPT"] for c in calls] == ["one.sh", "two.py"]
    env = calls[0]["env"]
    assert env["IMAGECOMPOSER_IMAGE_NAME"] == "demo"
    assert env["IMAGECOMPOSER_IMAGE_VERSION"] == "1.2.3"
    assert env["IMAGECOMPOSER_OS"] == "debian" and env["IMAGECOMPOSER_OS_VERSION"] == "12"
    assert env["IMAGECOMPOSER_STAGE"] == "post-install" and env["IMAGECOMPOSER_ROOT"] == "/"
    assert calls[0]["copies"] == [(one, f"{scripts.MOUNT}/one.sh")]  # the file, not its dir
    assert "binds" not in calls[0]
    assert calls[0]["argv"][-1] == f"{scripts.MOUNT}/one.sh"
    assert calls[0]["error"] is ScriptFailed
    assert calls[0]["network"] is False


def test_missing_script(fake_tree: Path, spec: Spec, tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="does not exist"):
        scripts.run_scripts(fake_tree, spec, "pre-install", (tmp_path / "nope.sh",))


def lock_with(*repos: LockedRepository) -> Lock:
    return Lock(os="debian", version="12", arch="x86_64", kind="deb", repositories=repos,
                packages=())


def test_apt_sources_from_the_lock(fake_tree: Path, tmp_path: Path) -> None:
    (fake_tree / "usr/share/keyrings").mkdir(parents=True)
    (fake_tree / "usr/share/keyrings/debian-archive-keyring.gpg").write_bytes(b"\x99key")
    extra_key = tmp_path / "extra.asc"
    extra_key.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    (fake_tree / "etc/apt").mkdir(parents=True)
    (fake_tree / "etc/apt/sources.list").write_text("")
    lock = lock_with(
        LockedRepository(name="debian", url="http://mirror.invalid/debian", kind="deb",
                         suite="bookworm", components=("main", "contrib")),
        LockedRepository(name="extra", url="http://127.0.0.1:8080/repo", kind="deb",
                         suite=None),
        LockedRepository(name="local", url="file:///srv/repo", kind="deb", suite="stable"),
    )
    written = apt_sources.configure(fake_tree, lock, {
        "debian": Path("/usr/share/keyrings/debian-archive-keyring.gpg"), "extra": extra_key})
    assert [p.name for p in written] == ["debian.sources", "extra.sources"]
    debian = written[0].read_text()
    assert "URIs: http://mirror.invalid/debian\nSuites: bookworm\nComponents: main contrib\n" \
        in debian
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n" in debian
    extra = written[1].read_text()
    assert "Suites: ./\n" in extra
    assert "Signed-By: /etc/apt/keyrings/imagecomposer-extra.asc\n" in extra
    assert (fake_tree / "etc/apt/keyrings/imagecomposer-extra.asc").read_text().startswith(
        "-----BEGIN")
    assert not (fake_tree / "etc/apt/sources.list").exists()


def test_apt_sources_copy_the_provider_keyring_when_not_installed(
        fake_tree: Path, tmp_path: Path) -> None:
    key = tmp_path / "archive.gpg"
    key.write_bytes(b"\x99binary")
    lock = lock_with(LockedRepository(name="debian", url="http://m.invalid/d", kind="deb",
                                      suite="bookworm"))
    apt_sources.configure(fake_tree, lock, {"debian": key})
    assert (fake_tree / "etc/apt/keyrings/imagecomposer-debian.gpg").read_bytes() == b"\x99binary"
    with pytest.raises(ComposeError, match="no keyring known"):
        apt_sources.configure(fake_tree, lock, {})


def test_no_apt_no_sources(fake_tree: Path) -> None:
    (fake_tree / "usr/bin/apt-get").unlink()
    lock = lock_with(LockedRepository(name="d", url="http://m.invalid/d", kind="deb"))
    assert apt_sources.configure(fake_tree, lock, {}) == []


def test_fstab_by_uuid(fake_tree: Path) -> None:
    home = PlannedPartition(
        name="home", type="home", type_guid="933ac7e1-2eb4-4f13-b844-0e14e2aef915",
        filesystem="xfs", start=2 << 30, size=1 << 30, partuuid="5" * 8 + "-5555-4555-8555-"
        + "5" * 12, fsuuid="66666666-6666-4666-8666-666666666666", number=3,
        mountpoint="/home", mount_options="nodev,nosuid")
    swap = attrs.evolve(home, name="swap", type="swap", filesystem="swap", mountpoint=None,
                        fsuuid="77777777-7777-4777-8777-777777777777", number=4,
                        mount_options="defaults")
    fstab.configure(fake_tree, make_layout(home, swap))
    lines = (fake_tree / "etc/fstab").read_text().splitlines()
    body = [line.split("\t") for line in lines if not line.startswith("#")]
    assert body == [
        ["UUID=33333333-3333-4333-8333-333333333333", "/", "ext4", "errors=remount-ro", "0",
         "1"],
        ["UUID=ABCD-1234", "/boot/efi", "vfat", "umask=0077,x-systemd.automount", "0",
         "2"],
        ["UUID=66666666-6666-4666-8666-666666666666", "/home", "xfs", "nodev,nosuid", "0",
         "0"],
        ["UUID=77777777-7777-4777-8777-777777777777", "none", "swap", "sw", "0", "0"],
    ]
    assert (fake_tree / "boot/efi").is_dir()


def test_fstab_swap_takes_the_specs_options() -> None:
    """A swap volume's ``mount_options`` are written as given (they were dropped for
    ``sw``): a priority, discard, a longer device timeout for a slow boot."""
    swap = PlannedPartition(
        name="swap", type="swap", type_guid="0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
        filesystem="swap", start=2 << 30, size=1 << 30, partuuid="5" * 8 + "-5555-4555-8555-"
        + "5" * 12, fsuuid="77777777-7777-4777-8777-777777777777", number=3,
        mount_options="pri=10,x-systemd.device-timeout=300")
    text = fstab.render(make_layout(swap))
    assert ("UUID=77777777-7777-4777-8777-777777777777\tnone\tswap\t"
            "pri=10,x-systemd.device-timeout=300\t0\t0") in text


def test_fstab_esp_is_mounted_on_first_access_unless_the_spec_says(fake_tree: Path) -> None:
    """The ESP is an automount by default (mounted at boot it holds local-fs.target, and the
    login prompt, until its device and fsck.vfat are done); the spec's ``mount_options``
    win, and another vfat partition is mounted at boot as before."""
    data = PlannedPartition(
        name="data", type="generic", type_guid="0fc63daf-8483-4772-8e79-3d69d8477de4",
        filesystem="vfat", start=2 << 30, size=1 << 30, partuuid="5" * 8 + "-5555-4555-8555-"
        + "5" * 12, fsuuid="ABCD-5678", number=3, mountpoint="/srv/data")
    rows = [line.split("\t") for line in fstab.render(make_layout(data)).splitlines()
            if not line.startswith("#")]
    assert ["UUID=ABCD-1234", "/boot/efi", "vfat", "umask=0077,x-systemd.automount", "0",
            "2"] in rows
    assert ["UUID=ABCD-5678", "/srv/data", "vfat", "umask=0077", "0", "2"] in rows
    layout = make_layout()
    given = attrs.evolve(layout.partitions[0], mount_options="umask=0022")
    text = fstab.render(attrs.evolve(layout, partitions=(given, *layout.partitions[1:])))
    assert "UUID=ABCD-1234\t/boot/efi\tvfat\tumask=0022\t0\t2" in text
    assert "automount" not in text


def test_fstab_read_only_roots() -> None:
    text = fstab.render(make_layout(root_fs="erofs"))
    assert "UUID=33333333-3333-4333-8333-333333333333\t/\terofs\tro\t0\t0" in text
    assert "/dev/mapper/root\t/\text4\tro\t0\t0" in fstab.render(make_layout(),
                                                               verity_root=True)

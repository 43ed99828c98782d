"""Hostile image trees: every configuration step that writes into the tree stays inside it.

Each test plants symlinks in the tree (absolute, relative with ``..``, directories in the
middle of a path) pointing at host files the test made in its own temporary directory, runs
one step as the build would, and checks the host files afterwards. Each runs with openat2
and with the fallback walk of :mod:`imagecomposer.foundation.rootfs`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import make_layout

from imagecomposer.cache.initramfs import InitramfsCache
from imagecomposer.compose import bootloader, initramfs, initramfs_cache
from imagecomposer.compose.composer import split_partitions
from imagecomposer.compose.configure import files, fstab, network, ssh, system, users
from imagecomposer.compose.layout import PlannedPartition
from imagecomposer.export.sbom import embed_sboms
from imagecomposer.families.deb import install as dpkg_install
from imagecomposer.families.deb import verity_initrd
from imagecomposer.families.rpm import configure as rpm_configure
from imagecomposer.foundation import rootfs
from imagecomposer.foundation.errors import ComposeError, ImagePathError, SourceNotAllowed
from imagecomposer.foundation.rootfs import resolve
from imagecomposer.spec.model import File, Network, Spec, Ssh

KVER = "6.1.0-9-amd64"


@pytest.fixture(autouse=True, params=["openat2", "walk"])
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "openat2" and rootfs.SYS_OPENAT2 is None:
        pytest.skip("no openat2 system call number for this architecture")
    monkeypatch.setattr(resolve, "_use_openat2", request.param == "openat2")
    return str(request.param)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """Host files the hostile tree points at."""
    outside = tmp_path / "host"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret").write_text("host secret\n")
    (outside / "secret").chmod(0o600)
    return outside


def untouched(host: Path) -> None:
    assert (host / "secret").read_text() == "host secret\n"
    st = (host / "secret").stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, os.geteuid())
    assert list((host / "dir").iterdir()) == []
    assert sorted(p.name for p in host.iterdir()) == ["dir", "secret"]


def up(link_dir: Path, target: Path) -> str:
    """A relative link target that climbs far above the tree to ``target`` on the host."""
    return "../" * (len(link_dir.parts) + 2) + str(target).lstrip("/")


def plant(link: Path, target: Path | str) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_dir() and not link.is_symlink():
        link.rmdir()
    elif link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
    return link


def in_tree(tree: Path, host_path: Path) -> Path:
    """Where a link to ``host_path`` lands when resolved inside the tree."""
    return tree / str(host_path).lstrip("/")


# --- files ------------------------------------------------------------------------------------


def test_the_issue_attack_through_files_entries(fake_tree: Path, host: Path,
                                                tmp_path: Path) -> None:
    """Issue 18 item 1, as reported: entry A copies a directory holding ``evil -> X`` to
    /opt/esc, entry B copies a directory holding ``esc/evil`` to /opt."""
    spec_dir = tmp_path / "spec"
    (spec_dir / "a").mkdir(parents=True)
    (spec_dir / "a/evil").symlink_to(host / "secret")
    (spec_dir / "b/esc").mkdir(parents=True)
    (spec_dir / "b/esc/evil").write_text("overwritten\n")
    files.apply(fake_tree, (File(destination="/opt/esc", source=spec_dir / "a"),
                            File(destination="/opt", source=spec_dir / "b")),
                source_roots=(spec_dir,))
    assert (fake_tree / "opt/esc/evil").read_text() == "overwritten\n"
    untouched(host)


def test_stock_absolute_links_are_replaced_by_an_overlay(fake_tree: Path, host: Path,
                                                         tmp_path: Path) -> None:
    """The stock image has absolute links under /etc (/etc/systemd/system/sshd.service):
    an ordinary overlay of /etc must replace them, never write where they point."""
    plant(fake_tree / "etc/systemd/system/sshd.service", host / "secret")
    plant(fake_tree / "etc/ssh/sshd_config.d", host / "dir")  # a directory in the middle
    overlay = tmp_path / "spec/etc-overlay"
    (overlay / "systemd/system").mkdir(parents=True)
    (overlay / "systemd/system/sshd.service").write_text("[Unit]\n")
    (overlay / "ssh/sshd_config.d").mkdir(parents=True)
    (overlay / "ssh/sshd_config.d/10-x.conf").write_text("X11Forwarding no\n")
    files.apply(fake_tree, (File(destination="/etc", source=overlay),),
                source_roots=(tmp_path / "spec",))
    unit = fake_tree / "etc/systemd/system/sshd.service"
    assert not unit.is_symlink() and unit.read_text() == "[Unit]\n"
    # the directory link resolved to nothing in the tree: a real directory replaced it
    assert (fake_tree / "etc/ssh/sshd_config.d/10-x.conf").read_text() == "X11Forwarding no\n"
    untouched(host)


def test_files_write_and_mkdir_through_planted_links(fake_tree: Path, host: Path) -> None:
    plant(fake_tree / "etc/motd", host / "secret")
    plant(fake_tree / "etc/issue", up(fake_tree / "etc", host / "secret"))
    plant(fake_tree / "srv", host / "dir")
    files.apply(fake_tree, (File(destination="/etc/motd", content="hi\n"),
                            File(destination="/etc/issue", content="hi\n", mode="0600"),
                            File(destination="/srv/www/index.html", content="<p>\n"),
                            File(destination="/srv/state", mode="0700")),
                source_roots=())
    assert (fake_tree / "etc/motd").read_text() == "hi\n"
    assert not (fake_tree / "etc/issue").is_symlink()
    assert (in_tree(fake_tree, host / "dir") / "www/index.html").read_text() == "<p>\n"
    assert (in_tree(fake_tree, host / "dir") / "state").stat().st_mode & 0o777 == 0o700
    untouched(host)


def test_a_source_outside_the_spec_directory_is_refused(fake_tree: Path, host: Path,
                                                        tmp_path: Path) -> None:
    """Issue 18 item 8, copy side: a source that is (or resolves through a symlink to) a
    host file outside the spec's directory is refused, naming it; a symlink inside a copied
    directory is copied as the image's own link."""
    spec_dir = tmp_path / "spec"
    (spec_dir / "conf/nested").mkdir(parents=True)
    (spec_dir / "shadow").symlink_to(host / "secret")
    (spec_dir / "conf/nested/key").symlink_to(host / "secret")
    (spec_dir / "conf/app.conf").write_text("a=1\n")
    for source in (spec_dir / "shadow", host / "secret", spec_dir / "../host/secret"):
        with pytest.raises(SourceNotAllowed, match="outside the directories sources may"):
            files.apply(fake_tree, (File(destination="/etc/copied", source=source),),
                        source_roots=(spec_dir,))
        assert not (fake_tree / "etc/copied").exists()
    files.apply(fake_tree, (File(destination="/opt/conf", source=spec_dir / "conf"),),
                source_roots=(spec_dir,))
    assert (fake_tree / "opt/conf/app.conf").read_text() == "a=1\n"
    assert (fake_tree / "opt/conf/nested/key").readlink() == host / "secret"  # a link, kept
    assert "host secret" not in "".join(
        p.read_text() for p in (fake_tree / "opt").rglob("*")
        if p.is_file() and not p.is_symlink())
    assert files.source_roots(Spec.from_text(
        "image: {name: x, version: '1', base: {os: debian, version: '12'}}",
        base_dir=spec_dir)) == (spec_dir,)
    untouched(host)


# --- generated configuration ------------------------------------------------------------------


def test_system_files_through_planted_links(fake_tree: Path, host: Path) -> None:
    plant(fake_tree / "etc/hostname", host / "secret")
    plant(fake_tree / "etc/hosts", up(fake_tree / "etc", host / "secret"))
    plant(fake_tree / "etc/machine-id", host / "secret")
    plant(fake_tree / "var/lib/dbus/machine-id", host / "secret")
    plant(fake_tree / "etc/default", host / "dir")
    plant(fake_tree / "var/lib/systemd/random-seed", host / "secret")
    system.hostname(fake_tree, "web1")
    system.first_boot_identity(fake_tree)
    system.keyboard(fake_tree, "de")
    system.timezone(fake_tree, "UTC")
    assert (fake_tree / "etc/hostname").read_text() == "web1\n"
    assert "127.0.1.1\tweb1" in (fake_tree / "etc/hosts").read_text()
    assert (fake_tree / "etc/machine-id").read_text() == ""
    assert (fake_tree / "var/lib/dbus/machine-id").readlink() == Path("/etc/machine-id")
    assert not (fake_tree / "var/lib/systemd/random-seed").is_symlink()
    assert (in_tree(fake_tree, host / "dir") / "keyboard").is_file()
    untouched(host)


def test_ssh_network_and_fstab_through_planted_links(fake_tree: Path, host: Path) -> None:
    plant(fake_tree / "etc/ssh/sshd_config.d", host / "dir")
    plant(fake_tree / "etc/systemd/system/ssh.service.d", up(fake_tree / "etc/systemd/system",
                                                             host / "dir"))
    plant(fake_tree / "etc/systemd/network", host / "dir")
    plant(fake_tree / "etc/resolv.conf", host / "secret")
    plant(fake_tree / "etc/fstab", host / "secret")
    plant(fake_tree / "srv", host / "dir")
    assert ssh.configure(fake_tree, Ssh(permit_root_login=False))
    network.configure(fake_tree, Network())
    layout = make_layout(PlannedPartition(
        name="data", type="linux", type_guid="0fc63daf-8483-4772-8e79-3d69d8477de4",
        filesystem="ext4", start=2 << 30, size=1 << 30, partuuid="5" * 8 + "-5555-4555-8555-"
        + "5" * 12, fsuuid="6" * 8 + "-6666-4666-8666-" + "6" * 12, number=3,
        mountpoint="/srv/data"))
    fstab.configure(fake_tree, layout)
    landed = in_tree(fake_tree, host / "dir")
    assert "PermitRootLogin no" in (landed / "50-imagecomposer.conf").read_text()
    assert (landed / "50-imagecomposer-host-keys.conf").is_file()
    assert (landed / "10-imagecomposer-0.network").is_file()
    assert (landed / "data").is_dir()  # the mount point
    assert (fake_tree / "etc/resolv.conf").readlink() == Path(
        "../run/systemd/resolve/stub-resolv.conf")
    assert "\t/srv/data\text4" in (fake_tree / "etc/fstab").read_text()
    assert not list((fake_tree / "etc/ssh").glob("ssh_host_*"))
    untouched(host)


@pytest.mark.root
def test_authorized_keys_never_follow_a_planted_ssh_link(fake_tree: Path, host: Path) -> None:
    (fake_tree / "etc/passwd").write_text((fake_tree / "etc/passwd").read_text()
                                          + "alice:x:1000:1000::/home/alice:/bin/sh\n")
    plant(fake_tree / "home/alice/.ssh", host / "dir")
    with pytest.raises(ImagePathError, match=r"/home/alice/\.ssh .*symlink"):
        users.authorized_keys(fake_tree, "alice", ("ssh-ed25519 AAAA alice@x",))
    (fake_tree / "home/alice/.ssh").unlink()
    plant(fake_tree / "home/alice/.ssh/authorized_keys", host / "secret")
    written = users.authorized_keys(fake_tree, "alice", ("ssh-ed25519 AAAA alice@x",))
    assert written == fake_tree / "home/alice/.ssh/authorized_keys"
    st = written.lstat()
    assert (written.read_text(), st.st_uid, st.st_mode & 0o777) == (
        "ssh-ed25519 AAAA alice@x\n", 1000, 0o600)
    assert (fake_tree / "home/alice").stat().st_uid == 1000
    untouched(host)


def test_verity_initrd_through_planted_links(fake_tree: Path, host: Path) -> None:
    for marker in ("usr/sbin/update-initramfs", "usr/sbin/veritysetup"):
        (fake_tree / marker).write_text("#!/bin/sh\n")
    plant(fake_tree / "etc/initramfs-tools/hooks", host / "dir")
    plant(fake_tree / "etc/initramfs-tools/scripts/local-top/imagecomposer-verity",
          host / "secret")
    verity_initrd.install(fake_tree)
    assert (in_tree(fake_tree, host / "dir") / "imagecomposer-verity").stat().st_mode & 0o111
    untouched(host)


def test_split_partitions_refuses_a_mount_point_link(fake_tree: Path, host: Path) -> None:
    plant(fake_tree / "srv", host / "dir")
    layout = make_layout(PlannedPartition(
        name="srv", type="linux", type_guid="0fc63daf-8483-4772-8e79-3d69d8477de4",
        filesystem="ext4", start=2 << 30, size=1 << 30, partuuid="7" * 8 + "-7777-4777-8777-"
        + "7" * 12, fsuuid="8" * 8 + "-8888-4888-8888-" + "8" * 12, number=3,
        mountpoint="/srv"))
    with pytest.raises(ComposeError, match=r"mount point /srv of partition srv is a symlink"):
        split_partitions(fake_tree, layout)
    untouched(host)


# --- installation leftovers, initramfs, bootloader, SBOM, rpm ----------------------------------


def test_dpkg_cleanup_through_planted_links(fake_tree: Path, host: Path) -> None:
    plant(fake_tree / "etc/machine-id", host / "secret")
    plant(fake_tree / "var/cache/ldconfig/aux-cache", host / "secret")
    dpkg_install._cleanup(fake_tree)
    assert (fake_tree / "etc/machine-id").read_text() == ""
    assert not (fake_tree / "var/cache/ldconfig/aux-cache").exists()
    untouched(host)


def kernel_tree(tree: Path) -> None:
    for path, text in {"var/lib/dpkg/status": "Package: linux-image\n",
                       f"boot/vmlinuz-{KVER}": "MZkernel",
                       f"usr/lib/modules/{KVER}/modules.dep": "",
                       "usr/sbin/update-initramfs": "#!/bin/sh\n"}.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text)


def test_initramfs_cache_restore_through_a_planted_link(fake_tree: Path, host: Path,
                                                        tmp_path: Path) -> None:
    kernel_tree(fake_tree)

    def builder(tree: Path, **_: object) -> list[initramfs.Kernel]:
        found = initramfs.kernels(tree)
        for kernel in found:
            kernel.initrd.write_bytes(b"initrd")
        return found

    cache = InitramfsCache(tmp_path / "cache")
    initramfs_cache.build(fake_tree, cache, root_fstype="ext4", builder=builder)
    plant(fake_tree / f"boot/initrd.img-{KVER}", host / "secret")  # planted after a build
    initramfs_cache.build(fake_tree, cache, root_fstype="ext4", builder=builder)  # a hit
    assert (fake_tree / f"boot/initrd.img-{KVER}").read_bytes() == b"initrd"
    untouched(host)


def test_the_bootloader_copies_only_files_of_the_tree(fake_tree: Path, host: Path,
                                                      tmp_path: Path, spec: Spec) -> None:
    kernel_tree(fake_tree)
    plant(fake_tree / f"boot/initrd.img-{KVER}", host / "secret")
    efi = fake_tree / "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
    efi.parent.mkdir(parents=True)
    efi.write_bytes(b"MZboot")
    kernels = initramfs.kernels(fake_tree)
    esp = tmp_path / "esp"
    with pytest.raises(ImagePathError, match=f"/boot/initrd.img-{KVER}"):
        bootloader.install(fake_tree, esp, spec, make_layout(), kernels)
    assert "host secret" not in "".join(
        p.read_text(errors="replace") for p in esp.rglob("*")
        if p.is_file() and not p.is_symlink())
    untouched(host)


def test_sboms_are_embedded_inside_the_image(fake_tree: Path, host: Path) -> None:
    """Issue 18 item 1: a planted /usr/share/sbom symlink made the tool write an SPDX file
    into a host directory."""
    plant(fake_tree / "usr/share/sbom", host / "dir")
    written = embed_sboms(fake_tree, "demo", {"spdx": {"spdxVersion": "SPDX-2.3"}})
    landed = in_tree(fake_tree, host / "dir") / "demo.spdx.json"
    assert written == [landed] and '"SPDX-2.3"' in landed.read_text()
    plant(fake_tree / "usr/share/sbom", up(fake_tree / "usr/share", host / "dir"))
    embed_sboms(fake_tree, "demo", {"spdx": {"spdxVersion": "SPDX-2.3"}})
    untouched(host)


def test_rpm_kernels_and_selinux_through_planted_links(fake_tree: Path, host: Path) -> None:
    (fake_tree / f"usr/lib/modules/{KVER}").mkdir(parents=True)
    (fake_tree / f"usr/lib/modules/{KVER}/vmlinuz").write_bytes(b"MZ")
    plant(fake_tree / "boot", host / "dir")
    plant(fake_tree / "etc/selinux/config", host / "secret")
    assert rpm_configure.expose_kernels(fake_tree) == [KVER]
    assert (in_tree(fake_tree, host / "dir") / f"vmlinuz-{KVER}").read_bytes() == b"MZ"
    assert rpm_configure.configure_selinux(fake_tree, "disabled") == "none"
    (fake_tree / "etc/selinux/config").unlink()
    (in_tree(fake_tree, host / "secret")).parent.mkdir(parents=True, exist_ok=True)
    in_tree(fake_tree, host / "secret").write_text("SELINUX=enforcing\n")
    plant(fake_tree / "etc/selinux/config", host / "secret")  # resolves inside now
    assert rpm_configure.configure_selinux(fake_tree, "disabled") == "config"
    assert (fake_tree / "etc/selinux/config").read_text() == "SELINUX=disabled\n"
    untouched(host)

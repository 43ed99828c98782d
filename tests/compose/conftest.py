"""Fixtures for the compose tests: a small fake image tree, and a real Debian tree (network)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagecomposer.compose.layout import Layout, PlannedPartition
from imagecomposer.spec.model import Base, Image, Spec

PASSWD = ("root:x:0:0:root:/root:/bin/bash\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
GROUP = "root:x:0:\nadm:x:4:\nsudo:x:27:\nusers:x:100:\nnogroup:x:65534:\n"
SHADOW = "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"
GSHADOW = "root:*::\nadm:*::\nsudo:*::\nusers:*::\nnogroup:*::\n"
LOGIN_DEFS = "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\nUMASK 022\n" \
    "ENCRYPT_METHOD SHA512\nSYS_UID_MIN 100\nSYS_UID_MAX 999\nSYS_GID_MIN 100\nSYS_GID_MAX 999\n"
UNIT = "[Unit]\nDescription={name}\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy={target}\n"


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def fake_tree(tmp_path: Path) -> Path:
    """A tiny merged-/usr image tree: account files, a few units, skel, sshd marker."""
    tree = tmp_path / "tree"
    for name in ("bin", "sbin", "lib"):
        (tree / "usr" / name).mkdir(parents=True)
        (tree / name).symlink_to(f"usr/{name}")
    write(tree / "etc/passwd", PASSWD)
    write(tree / "etc/group", GROUP)
    write(tree / "etc/shadow", SHADOW, 0o640)
    write(tree / "etc/gshadow", GSHADOW, 0o640)
    write(tree / "etc/login.defs", LOGIN_DEFS)
    write(tree / "etc/skel/.profile", "# skel\n")
    (tree / "root").mkdir(mode=0o700)
    (tree / "home").mkdir()
    units = tree / "usr/lib/systemd/system"
    for name, target in (("systemd-networkd.service", "multi-user.target"),
                         ("systemd-resolved.service", "multi-user.target"),
                         ("ssh.service", "multi-user.target"),
                         ("serial-getty@.service", "getty.target"),
                         ("fstrim.timer", "timers.target")):
        write(units / name, UNIT.format(name=name, target=target))
    (tree / "etc/systemd/system").mkdir(parents=True)
    write(tree / "usr/sbin/sshd", "#!/bin/sh\n", 0o755)
    (tree / "etc/ssh/sshd_config.d").mkdir(parents=True)
    write(tree / "etc/ssh/ssh_host_ed25519_key", "secret\n", 0o600)
    write(tree / "usr/bin/apt-get", "#!/bin/sh\n", 0o755)
    return tree


@pytest.fixture
def spec() -> Spec:
    return Spec(image=Image(name="demo", version="1.2.3", base=Base(os="debian", version="12")))


ESP_GUID = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
ROOT_GUID = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"


def make_layout(*extra: PlannedPartition, root_fs: str = "ext4") -> Layout:
    parts = [
        PlannedPartition(name="esp", type="esp", type_guid=ESP_GUID, filesystem="vfat",
                         start=1 << 20, size=256 << 20,
                         partuuid="11111111-1111-4111-8111-111111111111", fsuuid="ABCD-1234",
                         number=1, mountpoint="/boot/efi"),
        PlannedPartition(name="root", type="root", type_guid=ROOT_GUID, filesystem=root_fs,
                         start=257 << 20, size=1 << 30,
                         partuuid="22222222-2222-4222-8222-222222222222",
                         fsuuid="33333333-3333-4333-8333-333333333333", number=2,
                         mountpoint="/"),
        *extra,
    ]
    return Layout(table="gpt", size=4 << 30, disk_id="44444444-4444-4444-8444-444444444444",
                  partitions=tuple(parts))


@pytest.fixture
def layout() -> Layout:
    return make_layout()


@pytest.fixture
def no_mounts_left() -> Iterator[None]:
    """Assert a test leaves no new mount behind (in the test's own mount namespace)."""
    before = Path("/proc/self/mounts").read_text()
    yield
    after = Path("/proc/self/mounts").read_text()
    assert after == before, "mounts were left behind"


requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="session")
def debian_packages(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The bootable Debian 12 set as (Lock, {name: .deb}), resolved and downloaded by apt in a
    scratch root (test-only; the library never uses apt). Cached across runs in
    $IMAGECOMPOSER_TEST_APT_DIR (default /var/tmp/imagecomposer-test-apt)."""
    from compose_debset import TEST_SET, debian_lock

    root = Path(os.environ.get("IMAGECOMPOSER_TEST_APT_DIR", "/var/tmp/imagecomposer-test-apt"))
    return debian_lock(root, TEST_SET)

"""The compose sandbox holds against hostile scripts (issue 18, item 5), on a hermetic tree.

The tree is the host's static busybox and nothing else. Each test plays a script that tries
to act on the host (remount the scripts directory and write into the spec directory, create
and read a block device, mount, write a sysctl, reach the network, learn the host's name)
and then checks, from the host, that nothing changed. The perl chroot()/open_by_handle_at
escapes need a real Debian tree: see test_debian_integration.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from imagecomposer.compose.configure import scripts
from imagecomposer.foundation import pivot_exec
from imagecomposer.foundation import sandbox as chroot
from imagecomposer.foundation.errors import CommandError
from imagecomposer.spec.model import Customizations, Scripts, Spec

BUSYBOX = shutil.which("busybox")
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(BUSYBOX is None, reason="needs busybox-static on the host"),
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A merged-/usr tree with the host's static busybox and its applets as symlinks."""
    assert BUSYBOX is not None
    root = tmp_path / "tree"
    (root / "usr/bin").mkdir(parents=True)
    for name in ("bin", "sbin"):
        (root / name).symlink_to("usr/bin")
    shutil.copy2(BUSYBOX, root / "usr/bin/busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "usr/bin" / applet).symlink_to("busybox")
    for name in ("root", "mnt", "etc"):
        (root / name).mkdir()
    return root


def run(tree: Path, script: str, **kwargs: object) -> str:
    done = chroot.run_in_chroot(tree, ["sh", "-c", script], capture=True, check=False,
                                **kwargs)  # type: ignore[arg-type]
    return done.stdout.decode() + done.output_tail


def test_only_the_kept_capabilities_and_no_new_privileges(tree: Path) -> None:
    status = run(tree, "cat /proc/self/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    kept = pivot_exec.mask(list(chroot.KEPT_CAPABILITIES))
    for name in ("CapBnd", "CapEff", "CapPrm"):
        assert int(fields[name], 16) == kept, name
    assert int(fields["CapInh"], 16) == 0 and int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    for dropped in ("sys_admin", "sys_module", "sys_rawio", "mknod", "sys_chroot", "net_admin",
                    "dac_read_search", "sys_ptrace", "sys_boot", "sys_time", "bpf"):
        assert not kept >> pivot_exec.CAPABILITIES[dropped] & 1, dropped


def test_the_tree_is_the_root_and_no_host_path_is_left(tree: Path, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("host secret\n")
    out = run(tree, f"cat {secret}; cat /proc/1/root{secret}; ls /proc/1/root/; "
                    "echo MOUNTS; cat /proc/self/mountinfo")
    assert "host secret" not in out
    mounts = [line for line in out.split("MOUNTS\n", 1)[1].splitlines() if " - " in line]
    points = {line.split()[4] for line in mounts}
    expected = {"/", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", chroot.RUN_DIR, "/proc"}
    expected |= {f"/proc/{p}" for p in chroot.PROC_READ_ONLY}
    expected |= {f"/dev/{d}" for d in chroot.DEVICES}
    assert "/" in points and points <= expected, points - expected
    root = next(line.split() for line in mounts if line.split()[4] == "/")
    assert root[3] == str(tree)  # the root is the tree itself (pivot_root, not a chroot)
    assert "/proc/sys" in points and " ro," in next(
        line for line in mounts if line.split()[4] == "/proc/sys")


def test_the_host_name_is_not_visible(tree: Path) -> None:
    out = run(tree, "uname -n; hostname; cat /proc/sys/kernel/hostname")
    assert out.split() == [chroot.HOSTNAME] * 3
    assert socket.gethostname() not in out.split()


def spec_with_scripts(spec: Spec, *, network: bool = False) -> Spec:
    return attrs.evolve(spec, customizations=Customizations(scripts=Scripts(network=network)))


def test_a_script_cannot_write_into_the_spec_directory(tree: Path, tmp_path: Path,
                                                        spec: Spec) -> None:
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "secret.key").write_text("not for the image\n")
    evil = spec_dir / "evil.sh"
    text = (f"mount -o remount,rw,bind {scripts.MOUNT} && echo remounted > /root/log\n"
            f"mount -o remount,rw {scripts.MOUNT} && echo remounted >> /root/log\n"
            f"echo pwned > {scripts.MOUNT}/pwned && echo wrote >> /root/log\n"
            f"echo pwned >> {scripts.MOUNT}/evil.sh && echo appended >> /root/log\n"
            f"cat {scripts.MOUNT}/secret.key >> /root/log\n"
            "ls /run/imagecomposer/scripts >> /root/log\n"
            "exit 0\n")
    evil.write_text(text)
    scripts.run_scripts(tree, spec_with_scripts(spec), "post-install", (evil,))
    assert sorted(p.name for p in spec_dir.iterdir()) == ["evil.sh", "secret.key"]
    assert evil.read_text() == text
    log = (tree / "root/log").read_text()
    assert log == "evil.sh\n"  # no remount, no write, the spec's other files not visible
    assert not list(tree.rglob("pwned"))


def test_no_block_device_can_be_made_or_read(tree: Path) -> None:
    device = Path("/").stat().st_dev  # the host's root file system
    major, minor = os.major(device), os.minor(device)
    out = run(tree, f"mknod /root/disk b {major} {minor} && echo made\n"
                    "dd if=/root/disk bs=512 count=1 2>/dev/null | od -c | head -n 2\n"
                    "echo BLOCK; find /dev -type b; echo END")
    assert "made" not in out
    assert not os.path.lexists(tree / "root/disk")
    assert out.split("BLOCK\n", 1)[1].startswith("END")  # no block device in /dev


def test_nothing_can_be_mounted(tree: Path) -> None:
    out = run(tree, "mount -t tmpfs none /mnt && echo mounted\n"
                    "mount -t proc proc /mnt && echo mounted\n"
                    "mount --bind /root /mnt && echo mounted\n"
                    "mount -o remount,rw /sys && echo mounted\n"
                    "mount -o remount,rw /proc/sys && echo mounted\n"
                    "unshare -m true && echo unshared\n"
                    "chroot /root /bin/true && echo chrooted\n"
                    "true")
    assert "mounted" not in out and "unshared" not in out and "chrooted" not in out
    assert not list((tree / "mnt").iterdir())


def test_no_sysctl_and_no_module(tree: Path) -> None:
    sysctl = Path("/proc/sys/vm/swappiness")
    before = sysctl.read_text()
    # the same value written back: harmless if the write went through
    out = run(tree, f"v=$(cat {sysctl}); echo \"$v\" > {sysctl} && echo SYSCTL-WRITTEN\n"
                    "rmmod imagecomposer_no_such_module\n"
                    "echo h > /proc/sysrq-trigger && echo SYSRQ-WRITTEN\n"
                    "true")
    assert "SYSCTL-WRITTEN" not in out and "SYSRQ-WRITTEN" not in out
    assert "Read-only file system" in out
    # ENOENT would mean the kernel checked the name, i.e. the capability was there (a kernel
    # without module support answers ENOSYS either way)
    assert "No such file" not in out
    assert sysctl.read_text() == before


def test_read_only_binds_cannot_be_written_remounted_or_executed(tree: Path,
                                                                  tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    packages.mkdir()
    (packages / "a.deb").write_text("deb\n")
    tool = packages / "tool"
    tool.write_text("#!/bin/sh\necho ran\n")
    tool.chmod(0o755)
    target = f"{chroot.RUN_DIR}/packages/0"
    out = run(tree, f"echo x > {target}/new && echo wrote\n"
                    f"echo x >> {target}/a.deb && echo appended\n"
                    f"mount -o remount,rw,bind {target} && echo remounted\n"
                    f"{target}/tool\n"
                    f"cat {target}/a.deb\n"
                    f"echo x > {chroot.RUN_DIR}/new && echo wrote-run\n"
                    "true", binds=[(packages, target)])
    assert "deb\n" in out  # readable
    for word in ("wrote", "appended", "remounted", "ran", "wrote-run"):
        assert word not in out.split(), word
    assert sorted(p.name for p in packages.iterdir()) == ["a.deb", "tool"]
    assert (packages / "a.deb").read_text() == "deb\n"
    assert not (tree / "run").exists() or not list((tree / "run").iterdir())


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on the host's loopback; what it receives."""
    received: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(10)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                received.append(conn.recv(100))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    server.close()
    thread.join(5)


def test_network_only_when_the_spec_asks(tree: Path, tmp_path: Path, spec: Spec,
                                         listener: tuple[int, list[bytes]]) -> None:
    port, received = listener
    probe = tmp_path / "net.sh"
    probe.write_text(f"if echo hello | nc -w 3 127.0.0.1 {port}; then echo reached; "
                     "else echo unreachable; fi > /root/net\n")
    scripts.run_scripts(tree, spec_with_scripts(spec), "post-install", (probe,))
    assert (tree / "root/net").read_text() == "unreachable\n"
    assert received == []
    scripts.run_scripts(tree, spec_with_scripts(spec, network=True), "post-install", (probe,))
    assert (tree / "root/net").read_text() == "reached\n"
    assert received == [b"hello\n"]


def test_mount_points_in_the_tree_must_be_directories(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "host-dir"
    outside.mkdir()
    (tree / "run").symlink_to(outside)
    with pytest.raises(CommandError) as info:
        chroot.run_in_chroot(tree, ["true"])
    assert "/run in the image tree is not a directory" in info.value.stderr_tail
    assert not list(outside.iterdir())


def test_a_missing_command_is_reported(tree: Path) -> None:
    with pytest.raises(CommandError) as info:
        chroot.run_in_chroot(tree, ["no-such-tool", "x"])
    assert info.value.returncode == 127
    assert "no-such-tool: No such file or directory" in info.value.stderr_tail

"""The initramfs-tools pieces that open a dm-verity root: files written into the image, and
the local-top script's behaviour run by /bin/sh against fake tools and a fake command line."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_layout

from imagecomposer.compose.configure import fstab
from imagecomposer.families.deb import verity_initrd
from imagecomposer.foundation.errors import ComposeError

DATA = "f914d81b-a486-5ba6-adaf-2d56057c9f2a"
HASH = "1e3edf88-f46f-58d3-8f39-97114fb5d5c3"
ROOTHASH = "19e6ed3a33ccb5ad908c071e2418285c7c9a96e31d30a9d97a290c2f53c1fb5f"


def _tools(tree: Path, *names: str) -> None:
    for name in names:
        path = tree / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)


def test_install_writes_hook_and_local_top_script(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _tools(tree, "/usr/sbin/update-initramfs", "/usr/sbin/veritysetup")
    hook, script = verity_initrd.install(tree)
    assert hook == tree / verity_initrd.HOOK.lstrip("/")
    assert script == tree / "etc/initramfs-tools/scripts/local-top/imagecomposer-verity"
    for path in (hook, script):
        assert path.stat().st_mode & 0o777 == 0o755
        subprocess.run(["sh", "-n", path], check=True)  # valid shell
    hook_text = hook.read_text()
    assert "copy_exec \"$tool\" /sbin/veritysetup" in hook_text
    assert "manual_add_modules dm-verity" in hook_text
    assert "veritysetup open \"$data\" root \"$hash\" \"$roothash\"" in script.read_text()


def test_install_needs_veritysetup_and_initramfs_tools(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _tools(tree, "/usr/sbin/update-initramfs")
    with pytest.raises(ComposeError, match="cryptsetup-bin"):
        verity_initrd.install(tree)
    other = tmp_path / "dracut-tree"
    _tools(other, "/usr/sbin/veritysetup", "/usr/bin/dracut")
    with pytest.raises(ComposeError, match="initramfs-tools"):
        verity_initrd.install(other)
    assert not (tree / "etc/initramfs-tools").exists()


def _run_script(tmp_path: Path, fake_tool: Callable[[str, str], Path], cmdline: str,
                devices: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Run the local-top script with its absolute paths pointed into ``tmp_path``:
    /proc/cmdline, /scripts/functions (panic, wait_for_udev) and /dev/disk; ``-b`` becomes
    ``-e`` since the test's devices are plain files."""
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    (tmp_path / "functions").write_text(
        'panic() { echo "PANIC: $*"; exit 1; }\nwait_for_udev() { :; }\n')
    disk = tmp_path / "dev/disk/by-partuuid"
    disk.mkdir(parents=True, exist_ok=True)
    for partuuid in devices:
        (disk / partuuid).touch()
    calls = tmp_path / "veritysetup.calls"
    fake_tool("veritysetup", f'echo "DM_DISABLE_UDEV=$DM_DISABLE_UDEV $*" >> {calls}')
    fake_tool("modprobe", "exit 0")
    fake_tool("sleep", "exit 0")
    script = (verity_initrd.SCRIPT_TEXT
              .replace("/proc/cmdline", str(tmp_path / "cmdline"))
              .replace(". /scripts/functions", f". {tmp_path / 'functions'}")
              .replace("/dev/disk/", f"{tmp_path}/dev/disk/")
              .replace("[ -e /dev/mapper/", f"[ -e {tmp_path}/dev/mapper/")
              .replace("[ ! -b ", "[ ! -e "))
    path = tmp_path / "local-top"
    path.write_text(script)
    return subprocess.run(["sh", str(path)], capture_output=True, text=True, check=False)


def test_script_opens_the_root_named_on_the_command_line(
        tmp_path: Path, fake_tool: Callable[[str, str], Path]) -> None:
    cmdline = (f"initrd=\\x root=/dev/mapper/root roothash={ROOTHASH} "
               f"systemd.verity_root_data=PARTUUID={DATA} "
               f"systemd.verity_root_hash=PARTUUID={HASH} ro console=ttyS0,115200")
    done = _run_script(tmp_path, fake_tool, cmdline, (DATA, HASH))
    assert done.returncode == 0, done.stdout + done.stderr
    disk = tmp_path / "dev/disk/by-partuuid"
    assert (tmp_path / "veritysetup.calls").read_text() == (
        f"DM_DISABLE_UDEV=1 open {disk / DATA} root {disk / HASH} {ROOTHASH}\n")
    assert f"{verity_initrd.OPENED_MARKER} {disk / DATA} as /dev/mapper/root" in done.stdout


def test_script_without_roothash_does_nothing(
        tmp_path: Path, fake_tool: Callable[[str, str], Path]) -> None:
    done = _run_script(tmp_path, fake_tool, "root=UUID=1234 ro", ())
    assert done.returncode == 0 and done.stdout == ""
    assert not (tmp_path / "veritysetup.calls").exists()


def test_script_panics_when_a_device_never_appears(
        tmp_path: Path, fake_tool: Callable[[str, str], Path]) -> None:
    cmdline = (f"roothash={ROOTHASH} systemd.verity_root_data=PARTUUID={DATA} "
               f"systemd.verity_root_hash=PARTUUID={HASH}")
    done = _run_script(tmp_path, fake_tool, cmdline, (DATA,))
    assert done.returncode == 1
    assert "PANIC: imagecomposer-verity:" in done.stdout and "did not appear" in done.stdout
    assert not (tmp_path / "veritysetup.calls").exists()


def test_script_panics_when_veritysetup_fails(
        tmp_path: Path, fake_tool: Callable[[str, str], Path]) -> None:
    cmdline = (f"roothash={ROOTHASH} systemd.verity_root_data=PARTUUID={DATA} "
               f"systemd.verity_root_hash=PARTUUID={HASH}")
    (tmp_path / "fakebin").mkdir(exist_ok=True)
    done = _run_script(tmp_path, fake_tool, cmdline, (DATA, HASH))
    assert done.returncode == 0
    fake_tool("veritysetup", "echo 'Verity device detected corruption' >&2; exit 1")
    script = tmp_path / "local-top"
    failed = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert "PANIC: imagecomposer-verity: veritysetup open" in failed.stdout
    assert verity_initrd.OPENED_MARKER not in failed.stdout


def test_fstab_of_a_verity_root_is_read_only_with_tmpfs_tmp() -> None:
    text = fstab.render(make_layout(), verity_root=True)
    assert "/dev/mapper/root\t/\text4\tro\t0\t0" in text
    assert fstab.TMPFS_TMP in text.splitlines()
    assert "tmpfs" not in fstab.render(make_layout())

"""``boot`` takes every output format, compressed or not, and ``--ssh`` runs a command in the
booted image through a forwarded port (issue 12). Against a fake QEMU that records the disk
it was given and a fake ssh; the real boots are in tests/integration."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.boot import SshCommand, boot, ssh
from imagecomposer.export import FORMATS, Exporter
from imagecomposer.foundation.errors import BootError

FAKE_QEMU = r"""
for a in "$@"; do case "$a" in file:*) out="${a#file:}";; esac; done
printf '%s\n' "$@" > "$FAKE_QEMU_ARGS"
disk=$(printf '%s\n' "$@" | sed -n 's/^if=none,id=disk,format=[^,]*,file=\(.*\),snapshot=on$/\1/p')
qemu-img convert -O raw "$disk" "$FAKE_QEMU_DISK"
printf 'host login: ' >> "$out"
sleep 1000
"""
FAKE_SSH = r"""
echo "$*" >> "$FAKE_SSH_CALLS"
n=$(wc -l < "$FAKE_SSH_CALLS")
[ "$n" -le "${FAKE_SSH_REFUSE:-0}" ] && { echo "Connection refused" >&2; exit 255; }
for last; do :; done
echo "ran: $last"
exit "${FAKE_SSH_EXIT:-0}"
"""


@pytest.fixture
def fakes(tmp_path: Path, fake_tool: Callable[[str, str], Path],
          monkeypatch: pytest.MonkeyPatch) -> Path:
    fake_tool("qemu-system-x86_64", FAKE_QEMU)
    fake_tool("ssh", FAKE_SSH)
    monkeypatch.setenv("FAKE_QEMU_ARGS", str(tmp_path / "args"))
    monkeypatch.setenv("FAKE_QEMU_DISK", str(tmp_path / "seen.raw"))
    monkeypatch.setenv("FAKE_SSH_CALLS", str(tmp_path / "ssh-calls"))
    monkeypatch.setenv("IMAGECOMPOSER_NO_KVM", "1")
    raw = tmp_path / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(4 << 20)
        f.write(b"\x00" * 510 + b"\x55\xaa" + b"a disk image")
    return raw


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


DRIVE = {"raw": "raw", "qcow2": "qcow2", "vhd": "vpc", "vhd-fixed": "vpc", "vhdx": "vhdx",
         "vmdk": "vmdk", "vmdk-stream": "vmdk", "vdi": "vdi"}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_output_format_boots_as_itself(fakes: Path, tmp_path: Path, fmt: str) -> None:
    image = Exporter().convert(fakes, fmt, tmp_path / f"out{FORMATS[fmt].suffix}")
    result = boot(image, timeout=20, accelerator="tcg")
    args = (tmp_path / "args").read_text().splitlines()
    assert f"if=none,id=disk,format={DRIVE[fmt]},file={image},snapshot=on" in args
    assert result.format == DRIVE[fmt] and f"({result.accelerator}, {DRIVE[fmt]})" \
        in result.summary
    seen = (tmp_path / "seen.raw").read_bytes()
    assert seen[:fakes.stat().st_size] == fakes.read_bytes()  # the same disk


@pytest.mark.parametrize("compression", ["gzip", "xz", "zstd"])
def test_a_compressed_output_is_decompressed_to_a_temporary_file(
        fakes: Path, tmp_path: Path, compression: str) -> None:
    exporter = Exporter()
    qcow2 = exporter.convert(fakes, "qcow2", tmp_path / "out.qcow2")
    packed = exporter.compress(qcow2, compression, keep=True)
    before = digest(packed)
    result = boot(packed, timeout=20, accelerator="tcg")
    args = (tmp_path / "args").read_text().splitlines()
    drive = next(a for a in args if a.startswith("if=none,id=disk,"))
    assert drive.startswith("if=none,id=disk,format=qcow2,file=/") and str(tmp_path) not in drive
    assert result.format == "qcow2"
    assert (tmp_path / "seen.raw").read_bytes()[:fakes.stat().st_size] == fakes.read_bytes()
    assert digest(packed) == before  # never changed
    temporary = Path(drive.split("file=", 1)[1].split(",snapshot")[0])
    assert not temporary.exists()  # removed after the boot


def test_ssh_forwards_a_port_and_runs_the_command(fakes: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "RETRY", 0.05)
    monkeypatch.setenv("FAKE_SSH_REFUSE", "2")  # sshd answers from the third try on
    key = tmp_path / "id_ed25519"
    key.write_text("a key")
    result = boot(fakes, timeout=20, accelerator="tcg",
                  ssh=SshCommand("cat /etc/hostname", user="admin", key=key))
    args = (tmp_path / "args").read_text().splitlines()
    forward = next(a for a in args if a.startswith("user,model=virtio-net-pci"))
    port = int(forward.split("hostfwd=tcp:127.0.0.1:", 1)[1].split("-:22")[0])
    calls = (tmp_path / "ssh-calls").read_text().splitlines()
    assert len(calls) == 3
    assert calls[-1].startswith(f"-p {port} -o BatchMode=yes ")
    assert f"-i {key} -o IdentitiesOnly=yes admin@127.0.0.1 -- cat /etc/hostname" in calls[-1]
    assert result.ssh is not None and result.ssh.returncode == 0
    assert result.ssh.output == "ran: cat /etc/hostname\n"


def test_ssh_that_never_connects_is_a_boot_error(fakes: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "RETRY", 0.05)
    monkeypatch.setenv("FAKE_SSH_REFUSE", "1000")
    with pytest.raises(BootError, match=r"SSH into the image as root did not succeed "
                                        r"within 0 s .*\n  \| Connection refused"):
        boot(fakes, timeout=20, accelerator="tcg", ssh=SshCommand("true", wait=0.2))


def cli_boot(fakes: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "imagecomposer", "boot", str(fakes),
                           "--timeout", "20", *args], capture_output=True, text=True,
                          env=env, check=False)


def test_boot_ssh_through_the_cli(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = cli_boot(fakes, "--ssh", "systemctl is-active ssh", "--ssh-user", "admin")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran: systemctl is-active ssh\n"  # the command's output only
    assert "login prompt reached in " in done.stderr and "exited with 0" in done.stderr
    monkeypatch.setenv("FAKE_SSH_EXIT", "3")
    failed = cli_boot(fakes, "--ssh", "false")
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "ERROR: the command exited with 3 in the image: false" in failed.stderr

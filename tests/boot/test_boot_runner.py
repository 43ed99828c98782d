"""The boot runner against a fake QEMU on PATH: prompt detection, failures with the
console tail, markers, and QEMU always being killed. No real VM is started here."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.boot import accel, boot
from imagecomposer.boot.firmware import find_ovmf
from imagecomposer.boot.qemu import qemu_command
from imagecomposer.foundation.errors import BootError, ToolNotFound, UsageError

FAKE_QEMU = r"""
for a in "$@"; do case "$a" in file:*) out="${a#file:}";; esac; done
echo "$$" > "$FAKE_QEMU_PID"
printf '%s\n' "$@" > "$FAKE_QEMU_ARGS"
printf '\033[2JBdsDxe: starting Boot0001\r\n' >> "$out"
sleep 0.3
printf '%b' "$FAKE_QEMU_SAYS" >> "$out"
[ -n "$FAKE_QEMU_EXIT" ] && exit "$FAKE_QEMU_EXIT"
[ -n "$FAKE_QEMU_LATER" ] && sleep 1 && printf '%b' "$FAKE_QEMU_LATER" >> "$out"
sleep 1000
"""


@pytest.fixture
def fake_qemu(tmp_path: Path, fake_tool: Callable[[str, str], Path],
              monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    fake_tool("qemu-system-x86_64", FAKE_QEMU)
    monkeypatch.setenv("FAKE_QEMU_PID", str(tmp_path / "pid"))
    monkeypatch.setenv("FAKE_QEMU_ARGS", str(tmp_path / "args"))
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(1 << 20))

    def says(text: str, exit_code: int | None = None) -> Path:
        monkeypatch.setenv("FAKE_QEMU_SAYS", text)
        if exit_code is not None:
            monkeypatch.setenv("FAKE_QEMU_EXIT", str(exit_code))
        return image

    return says


def _assert_dead(tmp_path: Path) -> None:
    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"fake QEMU {pid} still runs")


def test_login_prompt_is_detected_and_qemu_killed(tmp_path: Path,
                                                  fake_qemu: Callable[[str], Path]) -> None:
    image = fake_qemu("check: hostname ok\\nDebian GNU/Linux 12 host ttyS0\\n\\nhost login: ")
    log = tmp_path / "console.log"
    result = boot(image, timeout=10, accelerator="tcg", console_log=log,
                  markers=["check: hostname ok"])
    assert result.accelerator == "tcg" and 0.2 < result.seconds < 5
    assert result.summary.startswith("login prompt reached in ")
    assert "host login:" in result.console_tail and "\x1b" not in result.console_tail
    assert result.markers == ("check: hostname ok",)
    assert "host login:" in log.read_text()
    _assert_dead(tmp_path)
    args = (tmp_path / "args").read_text().splitlines()
    assert f"if=none,id=disk,format=raw,file={image},snapshot=on" in args
    assert any(a.startswith("if=pflash") and "OVMF_CODE" in a for a in args)


def test_timeout_fails_with_the_console_tail(tmp_path: Path,
                                             fake_qemu: Callable[[str], Path]) -> None:
    image = fake_qemu("Begin: Running /scripts/local-block ... done.\\n")
    with pytest.raises(BootError, match=r"Boot timed out: no 'login:' after 1 s") as info:
        boot(image, timeout=1, accelerator="tcg")
    assert "  | Begin: Running /scripts/local-block" in str(info.value)
    _assert_dead(tmp_path)


def test_kernel_panic_fails_fast(tmp_path: Path, fake_qemu: Callable[[str], Path]) -> None:
    image = fake_qemu("Kernel panic - not syncing: VFS: Unable to mount root fs\\n")
    began = time.monotonic()
    with pytest.raises(BootError, match="'Kernel panic - not syncing' on the console"):
        boot(image, timeout=60, accelerator="tcg")
    assert time.monotonic() - began < 10
    _assert_dead(tmp_path)


def test_qemu_exit_is_reported(tmp_path: Path, fake_qemu: Callable[..., Path]) -> None:
    image = fake_qemu("reboot: Power down\\n", 0)
    with pytest.raises(BootError, match=r"QEMU exited with code 0 after .* before 'login:'"):
        boot(image, timeout=60, accelerator="tcg")


def test_missing_markers_fail(tmp_path: Path, fake_qemu: Callable[[str], Path]) -> None:
    image = fake_qemu("host login: ")
    with pytest.raises(BootError, match=r"markers \['users ok'\] were not printed"):
        boot(image, timeout=10, accelerator="tcg", markers=["users ok"])


def test_offline_check_runs_after_the_prompt(tmp_path: Path,
                                             fake_qemu: Callable[[str], Path]) -> None:
    image = fake_qemu("host login: ")
    checked: list[Path] = []
    boot(image, timeout=10, accelerator="tcg", check=checked.append)
    assert checked == [image]


def test_afterwards_keeps_the_vm_until_its_text(tmp_path: Path, fake_qemu: Callable[[str], Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``afterwards``: the boot goes on after the prompt until a later text (a boot profile
    printed once the boot finished); ``seconds`` is still the time to the prompt.
    ``timestamps``: when texts first appeared, before or after the prompt."""
    image = fake_qemu("host login: ")
    monkeypatch.setenv("FAKE_QEMU_LATER", "\\nPROFILE: userspace 9s\\nPROFILE-END\\n")
    log = tmp_path / "console.log"
    began = time.monotonic()
    result = boot(image, timeout=10, accelerator="tcg", console_log=log,
                  afterwards="PROFILE-END", timestamps=["BdsDxe", "PROFILE: ", "never"])
    waited = time.monotonic() - began
    assert result.seconds < 0.8 < waited  # the prompt at ~0.3 s, the profile 1 s later
    seen = dict(result.seen_at)  # when each text first appeared; "never" did not
    assert set(seen) == {"BdsDxe", "PROFILE: "}
    assert seen["BdsDxe"] <= result.seconds < seen["PROFILE: "] - 0.5
    assert "PROFILE: userspace 9s" in result.console_tail
    assert "PROFILE-END" in log.read_text()
    _assert_dead(tmp_path)
    with pytest.raises(BootError, match=r"Boot timed out: no 'NEVER' after"):
        boot(image, timeout=1, accelerator="tcg", afterwards="NEVER")
    _assert_dead(tmp_path)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such image"):
        boot(tmp_path / "absent.raw")
    image = tmp_path / "disk.raw"
    image.write_bytes(b"")
    with pytest.raises(UsageError, match="Secure Boot needs UEFI"):
        boot(image, secure_boot=True, firmware="bios")


def test_secure_boot_command_line(tmp_path: Path) -> None:
    ovmf = find_ovmf(secure_boot=True)
    assert "secboot" in ovmf.code.name
    argv = qemu_command(tmp_path / "d.raw", console=tmp_path / "c", firmware="uefi",
                        accelerator="tcg", memory="1G", cpus=1, code=ovmf.code,
                        varstore=tmp_path / "v", secure_boot=True, network=False)
    assert "q35,smm=on,accel=tcg" in argv
    assert "driver=cfi.pflash01,property=secure,value=on" in argv
    bios = qemu_command(tmp_path / "d.raw", console=tmp_path / "c", firmware="bios",
                        accelerator="kvm", memory="1G", cpus=1, code=None, varstore=None,
                        secure_boot=False, network=True)
    assert not any("pflash" in a for a in bios) and "host" in bios


def test_missing_ovmf_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(ToolNotFound, match="install the Debian package 'ovmf'"):
        find_ovmf(dirs=[tmp_path])


def test_kvm_can_be_ruled_out(monkeypatch: pytest.MonkeyPatch) -> None:
    accel.kvm_works.cache_clear()
    monkeypatch.setenv("IMAGECOMPOSER_NO_KVM", "1")
    try:
        assert accel.kvm_works() is False
    finally:
        accel.kvm_works.cache_clear()


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_qemu_dies_when_the_caller_is_terminated(tmp_path: Path,
                                                 fake_qemu: Callable[[str], Path],
                                                 signal_name: str) -> None:
    import signal
    import subprocess
    import sys

    image = fake_qemu("still booting\\n")
    code = ("import sys; from pathlib import Path; from imagecomposer.boot import boot\n"
            "from imagecomposer.foundation.errors import BuildInterrupted\n"
            "try:\n"
            f"    boot(Path({str(image)!r}), timeout=300, accelerator='tcg')\n"
            "except BuildInterrupted as exc:\n"
            "    print(exc); sys.exit(130)\n")
    # TMPDIR: a SIGKILLed caller cannot remove its temporary directory; keep it in tmp_path
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "TMPDIR": str(tmp_path)}
    caller = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              text=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "pid").exists():
        assert time.monotonic() < deadline, "fake QEMU never started"
        time.sleep(0.05)
    time.sleep(0.3)
    caller.send_signal(getattr(signal, signal_name))
    out, _ = caller.communicate(timeout=20)
    if signal_name == "SIGTERM":
        assert caller.returncode == 130 and "QEMU was stopped" in out
    _assert_dead(tmp_path)

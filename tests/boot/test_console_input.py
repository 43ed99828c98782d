"""Typing on the serial console (a LUKS2 passphrase) against a fake QEMU on PATH that
listens on the serial socket like QEMU's ``-chardev socket,server=on``, logs to the console
file, floods the socket (it must be drained) and checks what was typed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.boot import boot
from imagecomposer.boot.qemu import qemu_command
from imagecomposer.foundation.errors import BootError

FAKE_QEMU = r"""exec python3 - "$@" <<'PY'
import os, socket, sys, time
args = sys.argv[1:]
chardev = dict(kv.split("=", 1) for kv in args[args.index("-chardev") + 1].split(",")[1:])
log = open(chardev["logfile"], "a")
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(chardev["path"])
server.listen(1)
conn, _ = server.accept()
conn.sendall(b"x" * (4 << 20))  # blocks unless the other side drains the socket
def say(text):
    log.write(text)
    log.flush()
say("Begin: Running /scripts/local-top ... ")
say("Please unlock disk root_crypt: ")
typed = b""
while not typed.endswith(b"\n"):
    typed += conn.recv(1)
if typed == os.environ["FAKE_PASS"].encode() + b"\n":
    say("\ncryptsetup: root_crypt: set up successfully\nhost login: ")
else:
    say("\ncryptsetup: ERROR: root_crypt: cryptsetup failed, bad password or options?\n"
        "Kernel panic - not syncing: Attempted to kill init!\n")
time.sleep(1000)
PY"""


@pytest.fixture
def fake_qemu(tmp_path: Path, fake_tool: Callable[[str, str], Path],
              monkeypatch: pytest.MonkeyPatch) -> Path:
    fake_tool("qemu-system-x86_64", FAKE_QEMU)
    monkeypatch.setenv("FAKE_PASS", "correct horse")
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(1 << 20))
    return image


def test_passphrase_is_typed_when_asked(tmp_path: Path, fake_qemu: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    log = tmp_path / "console.log"
    result = boot(fake_qemu, timeout=20, accelerator="tcg", console_log=log,
                  console_input=[("Please unlock disk root_crypt:", "correct horse")])
    assert "host login:" in result.console_tail
    assert "set up successfully" in log.read_text()
    assert "correct horse" not in caplog.text  # what is typed is never logged


def test_wrong_passphrase_fails_the_boot(fake_qemu: Path) -> None:
    with pytest.raises(BootError, match="Kernel panic"):
        boot(fake_qemu, timeout=20, accelerator="tcg",
             console_input=[("Please unlock disk root_crypt:", "wrong")])


def test_serial_socket_on_the_command_line(tmp_path: Path) -> None:
    argv = qemu_command(tmp_path / "d.raw", console=tmp_path / "c", firmware="bios",
                        accelerator="tcg", memory="1G", cpus=1, code=None, varstore=None,
                        secure_boot=False, network=False, serial_socket=tmp_path / "s")
    at = argv.index("-chardev")
    assert argv[at + 1] == (f"socket,id=console,path={tmp_path / 's'},server=on,wait=off,"
                            f"logfile={tmp_path / 'c'}")
    assert argv[argv.index("-serial") + 1] == "chardev:console"
    plain = qemu_command(tmp_path / "d.raw", console=tmp_path / "c", firmware="bios",
                         accelerator="tcg", memory="1G", cpus=1, code=None, varstore=None,
                         secure_boot=False, network=False)
    assert "-chardev" not in plain and f"file:{tmp_path / 'c'}" in plain

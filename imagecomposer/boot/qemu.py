"""Boot a disk image in QEMU and wait for its login prompt on the serial console.

The image is attached with ``snapshot=on`` so the boot never changes it; writes go to a
temporary overlay QEMU discards. The serial console goes to a file that is polled for the
expected text, for failure patterns (a kernel panic, Secure Boot's "Access Denied") and for
markers a one-shot check unit printed. QEMU always dies when :func:`boot` returns or raises
(its process group is killed; it also dies with this process).

To type on the console (a LUKS2 passphrase asked by the initramfs), ``console_input`` pairs
a prompt with the text to send: the serial port is then a Unix socket QEMU listens on
(``-chardev socket,...,logfile=<console>``, the same console file), and each text goes out,
with a newline, once its prompt appears after the previous answer. What is typed is never
logged.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Literal

import attrs

from imagecomposer.boot import disk
from imagecomposer.boot.accel import kvm_works
from imagecomposer.boot.firmware import find_ovmf, vars_copy
from imagecomposer.boot.ssh import SshCommand, SshResult, free_port, run_ssh
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import BootError, BuildInterrupted, UsageError

log = logging.getLogger(__name__)
Firmware = Literal["uefi", "bios"]
TAIL_LINES = 40
ANSI = re.compile(r"\x1b\[[0-9;=?]*[A-Za-z]")
FAIL_ON = (
    "Kernel panic - not syncing",
    "Access Denied",  # OVMF refusing an image under Secure Boot
    "KVM internal error",
    "Give root password for maintenance",
    "You are in emergency mode",
)


@attrs.frozen
class BootResult:
    seconds: float  # from starting QEMU to the expected text
    console_tail: str
    accelerator: str  # "kvm" or "tcg"
    firmware: str
    secure_boot: bool
    markers: tuple[str, ...] = ()  # markers that were seen
    format: str = "raw"  # the disk format QEMU was given
    ssh: SshResult | None = None  # the --ssh command's result
    # (text, seconds from starting QEMU to its first appearance) for boot(timestamps=...)
    seen_at: tuple[tuple[str, float], ...] = ()

    @property
    def summary(self) -> str:
        text = f"login prompt reached in {self.seconds:.1f} s ({self.accelerator}, {self.format})"
        if self.ssh is not None:
            text += (f"; the SSH command exited with {self.ssh.returncode} after "
                     f"{self.ssh.seconds:.1f} s")
        return text


def qemu_command(image: Path, *, console: Path, firmware: Firmware, accelerator: str,
                 memory: str, cpus: int, code: Path | None, varstore: Path | None,
                 secure_boot: bool, network: bool,
                 serial_socket: Path | None = None, drive_format: str = "raw",
                 ssh_port: int | None = None) -> list[str]:
    """The QEMU command line (kept separate so it can be logged, tested and replayed).

    ``serial_socket``: the serial port is a Unix socket QEMU listens on (to type on the
    console), its output still logged to ``console``. ``drive_format``: the image's format
    (``-drive format=``). ``ssh_port``: forward 127.0.0.1:PORT to the guest's port 22."""
    machine = "q35"
    if secure_boot:
        machine += ",smm=on"
    argv = [runner.require("qemu-system-x86_64", "qemu-system-x86"),
            "-machine", f"{machine},accel={accelerator}",
            "-cpu", "host" if accelerator == "kvm" else "max",
            "-smp", str(cpus), "-m", memory, "-nodefaults", "-no-reboot",
            "-display", "none", "-monitor", "none"]
    if serial_socket is not None:
        argv += ["-chardev", f"socket,id=console,path={serial_socket},server=on,wait=off,"
                             f"logfile={console}", "-serial", "chardev:console"]
    else:
        argv += ["-serial", f"file:{console}"]
    argv += ["-drive", f"if=none,id=disk,format={drive_format},file={image},snapshot=on",
             "-device", "virtio-blk-pci,drive=disk,bootindex=0",
             "-device", "virtio-rng-pci"]
    if network:
        forward = f",hostfwd=tcp:127.0.0.1:{ssh_port}-:22" if ssh_port is not None else ""
        argv += ["-nic", f"user,model=virtio-net-pci{forward}"]
    elif ssh_port is not None:
        raise UsageError("--ssh needs the network (user networking forwards its port)")
    else:
        argv += ["-net", "none"]
    if firmware == "uefi":
        assert code is not None and varstore is not None
        if secure_boot:
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={varstore}"]
    return argv


def boot(image: Path, *, timeout: float = 300, secure_boot: bool = False,
         firmware: Firmware = "uefi", memory: str = "1G", cpus: int = 2,
         expect: str = "login:", console_log: Path | None = None,
         markers: Sequence[str] = (), fail_on: Sequence[str] = FAIL_ON,
         secure_boot_cert: Path | None = None, network: bool = True,
         accelerator: str | None = None,
         check: Callable[[Path], None] | None = None,
         console_input: Sequence[tuple[str, str]] = (),
         ssh: SshCommand | None = None, afterwards: str | None = None,
         timestamps: Sequence[str] = ()) -> BootResult:
    """Boot ``image`` (any output format, compressed or not: see
    :mod:`imagecomposer.boot.disk`) until ``expect`` appears on the serial console.

    ``markers`` must all appear before ``expect`` (a one-shot check unit's output); ``check``
    runs afterwards on the image file for offline checks (see ``imagecomposer.boot.inspect``).
    Secure Boot enrolls ``secure_boot_cert`` and enforces it. ``accelerator`` forces "kvm" or
    "tcg"; by default KVM is used only when :func:`kvm_works`. ``console_input``: (prompt,
    text) pairs, each text typed (plus a newline) when its prompt appears. ``ssh``: then run
    a command in the image over SSH (a forwarded port, see :mod:`imagecomposer.boot.ssh`);
    its result is in ``BootResult.ssh``. ``afterwards``: once ``expect`` appeared, keep the
    VM running until this text appears too (what a unit prints once the boot finished, e.g.
    ``systemd-analyze``); ``seconds`` stays the time to ``expect``, the console tail and
    ``console_log`` hold both. ``timestamps``: texts whose first appearance on the console is
    timed too (``BootResult.seen_at``; e.g. the EFI stub's line: the firmware and bootloader
    are done).
    Raises :class:`BootError` with the console tail on timeout, QEMU exit or a failure text.
    """
    image = Path(image)
    if not image.is_file():
        raise UsageError(f"no such image: {image}")
    if secure_boot and firmware != "uefi":
        raise UsageError("Secure Boot needs UEFI firmware")
    accel = accelerator or ("kvm" if kvm_works() else "tcg")
    with tempfile.TemporaryDirectory(prefix="imagecomposer-boot-") as tmp:
        work = Path(tmp)
        console = console_log or work / "console.log"
        console.parent.mkdir(parents=True, exist_ok=True)
        console.write_bytes(b"")
        code = varstore = None
        if firmware == "uefi":
            ovmf = find_ovmf(secure_boot=secure_boot)
            code = ovmf.code
            varstore = vars_copy(ovmf, work / "vars.fd", cert=secure_boot_cert)
        serial = work / "serial.sock" if console_input else None
        attached = disk.prepare(image, work)
        port = free_port() if ssh is not None else None
        argv = qemu_command(attached.path, console=console, firmware=firmware,
                            accelerator=accel, memory=memory, cpus=cpus, code=code,
                            varstore=varstore, secure_boot=secure_boot, network=network,
                            serial_socket=serial, drive_format=attached.format,
                            ssh_port=port)
        errors_path = work / "qemu.stderr"
        with errors_path.open("wb") as errors, _sigterm_raises(), \
                runner.spawn(argv, stdout=subprocess.DEVNULL, stderr=errors) as proc, \
                _Typist(serial, console_input, proc) as typist:
            began = time.monotonic()
            seen_at = {text: -1.0 for text in timestamps}
            seconds, seen = _watch(proc, console, errors_path, expect=expect, markers=markers,
                                   fail_on=fail_on, timeout=timeout, accel=accel,
                                   typist=typist, began=began, seen_at=seen_at)
            if afterwards is not None:
                _watch(proc, console, errors_path, expect=afterwards, markers=(),
                       fail_on=fail_on, timeout=timeout, accel=accel, typist=typist,
                       began=began, seen_at=seen_at)
            remote = None
            if ssh is not None and port is not None:
                remote = run_ssh(ssh, port, alive=lambda: proc.poll() is None)
        tail = _tail(_read(console))
    if check is not None:
        check(image)
    return BootResult(seconds=seconds, console_tail=tail, accelerator=accel, firmware=firmware,
                      secure_boot=secure_boot, markers=seen, format=attached.format,
                      seen_at=tuple((t, s) for t, s in seen_at.items() if s >= 0),
                      ssh=remote)


class _Typist:
    """Types ``answers`` on the serial socket as their prompts appear on the console; keeps
    the socket drained (QEMU's serial port stalls when nobody reads it)."""

    CONNECT_SECONDS = 10.0

    def __init__(self, path: Path | None, answers: Sequence[tuple[str, str]],
                 proc: subprocess.Popen[bytes]) -> None:
        self.path = path
        self.pending = list(answers)
        self.proc = proc
        self.sock: socket.socket | None = None
        self.seen_up_to = 0  # console offset after which the next prompt counts

    def __enter__(self) -> _Typist:
        if self.path is None:
            return self
        deadline = time.monotonic() + self.CONNECT_SECONDS
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                sock.close()
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BootError(f"cannot connect to QEMU's serial socket: {exc}") from None
                time.sleep(0.05)
                continue
            sock.setblocking(False)
            self.sock = sock
            return self

    def __exit__(self, *exc: object) -> None:
        if self.sock is not None:
            self.sock.close()

    def step(self, text: str) -> None:
        """Drain the socket; answer the next prompt if it appeared."""
        if self.sock is None:
            return
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self.sock.recv(65536):
                pass
        if not self.pending:
            return
        prompt, answer = self.pending[0]
        found = text.find(prompt, self.seen_up_to)
        if found < 0:
            return
        time.sleep(0.5)  # let the reader (askpass) switch the terminal off echo first
        self.sock.setblocking(True)
        try:
            self.sock.sendall(answer.encode() + b"\n")
        finally:
            self.sock.setblocking(False)
        log.debug("typed the answer to %r on the serial console", prompt)
        self.seen_up_to = found + len(prompt)
        self.pending.pop(0)


def _watch(proc: subprocess.Popen[bytes], console: Path, errors: Path, *, expect: str,
           markers: Sequence[str], fail_on: Sequence[str], timeout: float,
           accel: str, typist: _Typist | None = None, began: float | None = None,
           seen_at: dict[str, float] | None = None) -> tuple[float, tuple[str, ...]]:
    """Poll the console until ``expect``; ``seen_at``: texts not yet seen (-1) get the
    seconds since ``began`` (default: now) at which they first appeared."""
    began = time.monotonic() if began is None else began
    while True:
        text = _read(console)
        if typist is not None:
            typist.step(text)
        elapsed = time.monotonic() - began
        if seen_at is not None:
            for wanted in [w for w, at in seen_at.items() if at < 0 and w in text]:
                seen_at[wanted] = elapsed
        failed = next((f for f in fail_on if f in text or f in _read(errors)), None)
        if failed is not None:
            raise BootError(f"Boot failed after {elapsed:.1f} s ({accel}): '{failed}' on the "
                            f"console\n{_indent(_tail(text + _read(errors)))}")
        if expect in text:
            head = text[: text.index(expect)]
            missing = [m for m in markers if m not in head]
            if missing:
                raise BootError(f"Boot reached '{expect}' in {elapsed:.1f} s but the check "
                                f"markers {missing} were not printed\n{_indent(_tail(text))}")
            return elapsed, tuple(markers)
        if proc.poll() is not None:
            raise BootError(f"QEMU exited with code {proc.returncode} after {elapsed:.1f} s "
                            f"before '{expect}'\n{_indent(_tail(text + _read(errors)))}")
        if elapsed > timeout:
            raise BootError(f"Boot timed out: no '{expect}' after {timeout:.0f} s ({accel})\n"
                            f"{_indent(_tail(text))}")
        time.sleep(0.1)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception while QEMU runs, so the ``finally`` that kills it
    runs too (only from the main thread, and only if nobody else handles SIGTERM)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise BuildInterrupted("Boot test interrupted by SIGTERM; QEMU was stopped")

    signal.signal(signal.SIGTERM, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _tail(text: str) -> str:
    """The last lines of console output, without the firmware's ANSI escapes."""
    clean = ANSI.sub("", text).replace("\r", "")
    return "\n".join([line for line in clean.splitlines() if line.strip()][-TAIL_LINES:])


def _indent(text: str) -> str:
    return "\n".join("  | " + line for line in text.splitlines())

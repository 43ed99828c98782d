"""Choose the QEMU accelerator: KVM only when it really works, TCG otherwise.

``/dev/kvm`` existing is not enough: on nested, paravirtual KVM hosts OVMF dies at once
with "KVM internal error ... emulation failure" (QEMU then hangs paused). So the probe
boots OVMF with no disk under KVM and waits for its boot manager (``BdsDxe``) on the
serial console; any error, exit or silence means TCG. The answer is cached per process.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import time
from pathlib import Path

from imagecomposer.boot.firmware import find_ovmf, vars_copy
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import ToolNotFound

PROBE_SECONDS = 10.0
FAILURES = ("KVM internal error", "emulation failure", "failed to initialize kvm",
            "Could not access KVM kernel module")


@functools.cache
def kvm_works() -> bool:
    """True when QEMU can run OVMF under KVM on this machine."""
    if os.environ.get("IMAGECOMPOSER_NO_KVM"):
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return probe_kvm()


def probe_kvm(timeout: float = PROBE_SECONDS) -> bool:
    """Boot OVMF under KVM for at most ``timeout`` s: does it reach its boot manager?"""
    try:
        ovmf = find_ovmf()
        qemu = runner.require("qemu-system-x86_64", "qemu-system-x86")
    except ToolNotFound:
        return False
    with tempfile.TemporaryDirectory(prefix="kvm-probe-") as tmp:
        work = Path(tmp)
        varstore = vars_copy(ovmf, work / "vars.fd")
        console = work / "console.log"
        argv = [qemu, "-machine", "q35,accel=kvm", "-cpu", "host", "-m", "256", "-nodefaults",
                "-display", "none", "-monitor", "none", "-net", "none",
                "-serial", f"file:{console}",
                "-drive", f"if=pflash,format=raw,readonly=on,file={ovmf.code}",
                "-drive", f"if=pflash,format=raw,file={varstore}"]
        with (work / "stderr").open("wb") as errors, \
                runner.spawn(argv, stdout=subprocess.DEVNULL, stderr=errors) as proc:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = _read(console) + _read(work / "stderr")
                if any(f in text for f in FAILURES) or proc.poll() is not None:
                    return False
                if "BdsDxe" in text:
                    return True
                time.sleep(0.1)
    return False


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""

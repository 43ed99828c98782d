"""Firmware for boot tests: OVMF (UEFI, optionally with Secure Boot enforced) or SeaBIOS.

OVMF's variable store is writable, so every boot gets its own copy of the VARS template.
For Secure Boot the copy is made by ``virt-fw-vars`` (the ``virt-firmware`` Python
package) with the given certificate enrolled as PK, KEK and db and Secure Boot switched
on; the matching code image is the ``secboot`` build, which needs SMM (q35).
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import attrs

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import BootError, BootToolError, ToolNotFound

OVMF_DIRS = (Path("/usr/share/OVMF"), Path("/usr/share/edk2/ovmf"), Path("/usr/share/qemu"))
CODE = ("OVMF_CODE_4M.fd", "OVMF_CODE.fd")
CODE_SECBOOT = ("OVMF_CODE_4M.secboot.fd", "OVMF_CODE.secboot.fd")
VARS = {"OVMF_CODE_4M.fd": "OVMF_VARS_4M.fd", "OVMF_CODE.fd": "OVMF_VARS.fd",
        "OVMF_CODE_4M.secboot.fd": "OVMF_VARS_4M.fd", "OVMF_CODE.secboot.fd": "OVMF_VARS.fd"}
# Owner GUID of the enrolled test certificates (any fixed GUID will do).
OWNER = str(uuid.uuid5(uuid.NAMESPACE_URL, "imagecomposer:secure-boot-owner"))


@attrs.frozen
class Ovmf:
    code: Path
    vars_template: Path
    secure_boot: bool


def find_ovmf(*, secure_boot: bool = False, dirs: Sequence[Path] = OVMF_DIRS) -> Ovmf:
    """The OVMF code image and its VARS template (Debian package ``ovmf``)."""
    for directory in dirs:
        for name in CODE_SECBOOT if secure_boot else CODE:
            code = directory / name
            template = directory / VARS[name]
            if code.is_file() and template.is_file():
                return Ovmf(code=code, vars_template=template, secure_boot=secure_boot)
    kind = "Secure Boot OVMF (OVMF_CODE*.secboot.fd)" if secure_boot else "OVMF"
    raise ToolNotFound(f"Tool not found: {kind} in {', '.join(map(str, dirs))} "
                       "(install the Debian package 'ovmf')")


def vars_copy(ovmf: Ovmf, target: Path, *, cert: Path | None = None) -> Path:
    """A private writable VARS file; with Secure Boot, ``cert`` enrolled and SB enforced."""
    if not ovmf.secure_boot:
        shutil.copyfile(ovmf.vars_template, target)
        return target
    if cert is None:
        raise BootError("Secure Boot needs the certificate to enroll (the spec's db cert)")
    tool = virt_fw_vars()
    runner.run([tool, "--input", ovmf.vars_template, "--output", target,
                "--set-pk", OWNER, cert, "--add-kek", OWNER, cert, "--add-db", OWNER, cert,
                "--secure-boot"], error=BootToolError,
               what="virt-fw-vars")
    return target


def virt_fw_vars() -> str:
    """``virt-fw-vars`` from PATH or next to the running Python (pip ``virt-firmware``)."""
    found = runner.which("virt-fw-vars")
    if found:
        return found
    beside = Path(sys.executable).parent / "virt-fw-vars"
    if beside.is_file():
        return str(beside)
    raise ToolNotFound("Tool not found: virt-fw-vars (pip install virt-firmware)",
                       ["virt-fw-vars"])

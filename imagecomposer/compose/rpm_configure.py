"""What the configuration stage does differently in an RPM-family tree.

The generic configuration (users with ``useradd --root``, files, services, network, fstab,
the initramfs with dracut) works on Fedora, Enterprise Linux and Azure Linux trees as it is.
Three things differ from Debian, and are done here:

* **Kernels**: RPM kernels ship ``/usr/lib/modules/V/vmlinuz``; their ``%posttrans`` would run
  ``kernel-install`` (and dracut) once per kernel, which :mod:`.rpm_install` bypasses
  (``KERNEL_INSTALL_BYPASS=1``). :func:`expose_kernels` puts each at ``/boot/vmlinuz-V``,
  where the initramfs and bootloader steps look for kernels, so the initrd is built once,
  after fstab exists.
* **systemd presets**: RPM distributions enable services through preset files
  (``%systemd_post``). :func:`apply_presets` runs ``systemctl --root TREE preset-all`` once
  as a backstop, *before* the spec's ``services.enabled/disabled`` are applied over it.
* **SELinux**: :func:`configure_selinux` writes ``/etc/selinux/config`` for the spec's mode
  and, unless disabled, relabels the tree with the image's own ``setfiles`` and its policy's
  ``file_contexts`` (last, after every file is written); without setfiles it schedules a
  relabel at first boot (``/.autorelabel``). A mode other than disabled without an installed
  policy is an error naming the package to add.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from imagecomposer import runner
from imagecomposer.errors import ComposeError

log = logging.getLogger("imagecomposer.rpm")

RunInChroot = Callable[..., object]
SelinuxMode = Literal["disabled", "permissive", "enforcing"]


def _inside(tree: Path, path: str) -> Path:
    return tree / path.lstrip("/")


def expose_kernels(tree: Path) -> list[str]:
    """Copy ``/usr/lib/modules/V/vmlinuz`` to ``/boot/vmlinuz-V``; the versions exposed."""
    exposed: list[str] = []
    modules = _inside(tree, "/usr/lib/modules")
    if not modules.is_dir():
        return exposed
    boot = _inside(tree, "/boot")
    for vmlinuz in sorted(modules.glob("*/vmlinuz")):
        version = vmlinuz.parent.name
        target = boot / f"vmlinuz-{version}"
        if target.exists():
            continue
        boot.mkdir(mode=0o755, exist_ok=True)
        shutil.copy2(vmlinuz, target)
        exposed.append(version)
    return exposed


def has_systemd(tree: Path) -> bool:
    return _inside(tree, "/usr/lib/systemd/system").is_dir()


def apply_presets(tree: Path, *, timeout: float | None = None) -> bool:
    """``systemctl --root TREE preset-all`` when the tree has systemd; whether it ran."""
    if not has_systemd(tree):
        return False
    systemctl = runner.require("systemctl", "systemd")
    runner.run([systemctl, f"--root={tree}", "preset-all"], timeout=timeout,
               what="systemctl preset-all")
    return True


_SELINUX_LINE = re.compile(r"^\s*SELINUX\s*=.*$", re.MULTILINE)
_TYPE_LINE = re.compile(r"^\s*SELINUXTYPE\s*=\s*(\S+)\s*$", re.MULTILINE)


def configure_selinux(tree: Path, mode: SelinuxMode, *, chroot: RunInChroot | None = None,
                      timeout: float | None = None) -> str:
    """Set the mode and relabel; what was done: "none", "config", "setfiles", "autorelabel"."""
    config = _inside(tree, "/etc/selinux/config")
    if mode == "disabled":
        if not config.is_file():
            return "none"
        _write_mode(config, mode)
        return "config"
    if not config.is_file():
        raise ComposeError(
            f"SELinux {mode} needs a policy, but the image has no /etc/selinux/config: add "
            "selinux-policy-targeted to customizations.packages.install")
    found = _TYPE_LINE.search(config.read_text())
    policy = found.group(1) if found else "targeted"
    contexts = f"/etc/selinux/{policy}/contexts/files/file_contexts"
    if not _inside(tree, contexts).is_file():
        raise ComposeError(
            f"SELinux {mode}: policy {policy} is not installed ({contexts} is missing): add "
            f"selinux-policy-{policy} to customizations.packages.install")
    _write_mode(config, mode)
    setfiles = next((p for p in ("/usr/sbin/setfiles", "/sbin/setfiles")
                     if _inside(tree, p).is_file()), None)
    if setfiles is None:
        _inside(tree, "/.autorelabel").touch()
        log.warning("the image has no setfiles (policycoreutils): it relabels at first boot")
        return "autorelabel"
    if chroot is None:
        from imagecomposer.compose.chroot import run_in_chroot

        chroot = run_in_chroot
    chroot(tree, [setfiles, "-F", "-e", "/proc", "-e", "/sys", "-e", "/dev", "-e", "/run",
                  contexts, "/"], what="setfiles (SELinux relabel)", timeout=timeout)
    return "setfiles"


def _write_mode(config: Path, mode: str) -> None:
    text = config.read_text()
    line = f"SELINUX={mode}"
    text = _SELINUX_LINE.sub(line, text) if _SELINUX_LINE.search(text) else f"{line}\n{text}"
    config.write_text(text)

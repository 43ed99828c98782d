"""What the configuration stage does differently in an RPM-family tree.

The generic configuration (users with ``useradd --root``, files, services, network, fstab,
the initramfs with dracut) works on Fedora, Enterprise Linux and Azure Linux trees as it is.
Three things differ from Debian, and are done here:

* **Kernels**: RPM kernels ship ``/usr/lib/modules/V/vmlinuz``; their ``%posttrans`` would run
  ``kernel-install`` (and dracut) once per kernel, which :mod:`.install` bypasses
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
from collections.abc import Callable
from pathlib import Path

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.rootfs import Root
from imagecomposer.foundation.sandbox import run_in_chroot
from imagecomposer.foundation.settings import SelinuxMode

log = logging.getLogger("imagecomposer.rpm")

RunInChroot = Callable[..., object]
SELINUX_CONFIG = "/etc/selinux/config"


def expose_kernels(tree: Path) -> list[str]:
    """Copy ``/usr/lib/modules/V/vmlinuz`` to ``/boot/vmlinuz-V``; the versions exposed."""
    exposed: list[str] = []
    if not tree.is_dir():
        return exposed
    with Root(tree) as root:
        if not root.is_dir("/usr/lib/modules"):
            return exposed
        for version in root.listdir("/usr/lib/modules"):
            vmlinuz = f"/usr/lib/modules/{version}/vmlinuz"
            target = f"/boot/vmlinuz-{version}"
            if not root.is_file(vmlinuz) or root.exists(target, follow=False):
                continue
            root.copy_to(vmlinuz, root, target, keep_times=True)
            exposed.append(version)
    return exposed


def has_systemd(tree: Path) -> bool:
    if not tree.is_dir():
        return False
    with Root(tree) as root:
        return root.is_dir("/usr/lib/systemd/system")


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
    with Root(tree) as root:
        if mode == "disabled":
            if not root.is_file(SELINUX_CONFIG):
                return "none"
            _write_mode(root, mode)
            return "config"
        if not root.is_file(SELINUX_CONFIG):
            raise ComposeError(
                f"SELinux {mode} needs a policy, but the image has no {SELINUX_CONFIG}: add "
                "selinux-policy-targeted to customizations.packages.install")
        found = _TYPE_LINE.search(root.read_text(SELINUX_CONFIG))
        policy = found.group(1) if found else "targeted"
        contexts = f"/etc/selinux/{policy}/contexts/files/file_contexts"
        if not root.is_file(contexts):
            raise ComposeError(
                f"SELinux {mode}: policy {policy} is not installed ({contexts} is missing): "
                f"add selinux-policy-{policy} to customizations.packages.install")
        _write_mode(root, mode)
        setfiles = next((p for p in ("/usr/sbin/setfiles", "/sbin/setfiles")
                         if root.is_file(p)), None)
        if setfiles is None:
            root.write("/.autorelabel", "")
            log.warning("the image has no setfiles (policycoreutils): it relabels at first boot")
            return "autorelabel"
    if chroot is None:

        chroot = run_in_chroot
    chroot(tree, [setfiles, "-F", "-e", "/proc", "-e", "/sys", "-e", "/dev", "-e", "/run",
                  contexts, "/"], what="setfiles (SELinux relabel)", timeout=timeout)
    return "setfiles"


def _write_mode(root: Root, mode: str) -> None:
    text = root.read_text(SELINUX_CONFIG)
    line = f"SELINUX={mode}"
    text = _SELINUX_LINE.sub(line, text) if _SELINUX_LINE.search(text) else f"{line}\n{text}"
    root.write(SELINUX_CONFIG, text, mode=root.stat(SELINUX_CONFIG).st_mode & 0o7777)

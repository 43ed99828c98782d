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
  and, unless disabled, labels the tree at build time with the host's ``setfiles`` and the
  image's own ``file_contexts`` (last, after every file is written; shared with the Debian
  family: :mod:`imagecomposer.families.selinux`). A mode other than disabled without an
  installed policy is an error naming the package to add (the profile adds it).
"""

from __future__ import annotations

import logging
from pathlib import Path

from imagecomposer.families import selinux
from imagecomposer.foundation import runner
from imagecomposer.foundation.rootfs import Root
from imagecomposer.foundation.settings import SelinuxMode

log = logging.getLogger("imagecomposer.rpm")


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


def configure_selinux(tree: Path, mode: SelinuxMode, *, timeout: float | None = None,
                      parallel: int = 1) -> str:
    """Set the mode and label the tree (:func:`imagecomposer.families.selinux.configure`:
    the host's setfiles against the image's targeted policy); what was done: "none",
    "config" or "setfiles"."""
    return selinux.configure(tree, mode, default_policy="targeted",
                             packages="selinux-policy-targeted", timeout=timeout,
                             parallel=parallel)

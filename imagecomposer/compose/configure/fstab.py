"""/etc/fstab from the planned layout: filesystems by UUID, so device names never matter;
logical volumes and opened LUKS2 containers by their /dev/mapper names (what the initramfs
and systemd-cryptsetup create; a LUKS2 filesystem's UUID is only visible once opened).

The root line is written too (with ``errors=remount-ro`` for ext4 as Debian's installer does)
so ``systemd-remount-fs`` applies its options; read-only filesystems (squashfs, erofs, or a
dm-verity root) are mounted ``ro``. The mount points of every non-root partition are created
in the root tree. Partitions without a mount point (ESP without one, BIOS boot, verity
hashes) are left out. A dm-verity root also gets a tmpfs on /tmp (the rest of the writable
state is the spec's business: a ``var`` partition, see docs/disk.md).

The ESP (``type: esp``) is mounted on first access (``x-systemd.automount``, as systemd's
own gpt-auto-generator mounts it) unless the spec gives its ``mount_options``: mounted at
boot it holds ``local-fs.target``, and so the login prompt, until its device appeared and
fsck.vfat ran (measured 12-16 s of a TCG boot: docs/performance.md "Boot"); nothing at boot
reads it, and a kernel update's hooks that write it mount it by touching it.
"""

from __future__ import annotations

from pathlib import Path

from imagecomposer.compose.configure import paths
from imagecomposer.compose.layout import Layout, PlannedPartition, Volume, volume_device
from imagecomposer.foundation.rootfs import Root

READ_ONLY_FS = ("squashfs", "erofs")
TMPFS_TMP = "tmpfs\t/tmp\ttmpfs\tmode=1777,nosuid,nodev\t0\t0"
VFAT_OPTIONS = "umask=0077"
ESP_OPTIONS = f"{VFAT_OPTIONS},x-systemd.automount"


def _entry(part: Volume, *, verity_root: bool) -> str | None:
    if part.filesystem in ("none", "") or (part.mountpoint is None and part.filesystem != "swap"):
        return None
    device = volume_device(part)
    if part.filesystem == "swap":  # the spec's options (pri=, discard, x-systemd.*) or sw
        options = part.mount_options if part.mount_options not in ("", "defaults") else "sw"
        return f"{device}\tnone\tswap\t{options}\t0\t0"
    mountpoint = part.mountpoint or "/"
    options = part.mount_options or "defaults"
    is_root = mountpoint == "/"
    if is_root and verity_root:
        return f"/dev/mapper/root\t/\t{part.filesystem}\tro\t0\t0"
    if part.filesystem in READ_ONLY_FS and "ro" not in options.split(","):
        options = f"{options},ro" if options != "defaults" else "ro"
    if is_root and part.filesystem == "ext4" and options == "defaults":
        options = "errors=remount-ro"
    if part.filesystem == "vfat" and options == "defaults":
        is_esp = isinstance(part, PlannedPartition) and part.type == "esp"
        options = ESP_OPTIONS if is_esp else VFAT_OPTIONS
    passno = 0 if part.filesystem in (*READ_ONLY_FS, "xfs") else (1 if is_root else 2)
    return f"{device}\t{mountpoint}\t{part.filesystem}\t{options}\t0\t{passno}"


def render(layout: Layout, *, verity_root: bool = False) -> str:
    lines = ["# /etc/fstab: written by imagecomposer from the disk layout",
             "# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>"]
    volumes = list(layout.volumes())
    ordered = sorted(volumes, key=lambda v: (v.mountpoint or "~", volumes.index(v)))
    for part in ordered:
        line = _entry(part, verity_root=verity_root)
        if line is not None:
            lines.append(line)
    if verity_root and not any(v.mountpoint == "/tmp" for v in volumes):
        # the root is read-only: /tmp must be writable somewhere
        lines.append(TMPFS_TMP)
    return "\n".join(lines) + "\n"


def configure(tree: Path, layout: Layout, *, verity_root: bool = False) -> Path:
    with Root(tree) as root:
        for part in layout.volumes():
            if part.mountpoint and part.mountpoint != "/" and not root.is_dir(part.mountpoint):
                root.mkdir(part.mountpoint)
    return paths.write(tree, "/etc/fstab", render(layout, verity_root=verity_root))

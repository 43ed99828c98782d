"""Build the initramfs once, in the image, after fstab and the configuration are in place.

Package installation diverts ``update-initramfs`` to a no-op (see
:mod:`imagecomposer.families.deb.install`): mmdebstrap spends ~20 s building it twice, once in
the kernel postinst and again in the initramfs-tools trigger, and an initramfs built before
fstab exists lacks fsck for the root filesystem. Here it runs once per installed kernel with
zstd compression when the image has zstd (gzip otherwise: what initramfs-tools can unpack
without it). dracut-based images are handled the same way.

The initramfs-tools image carries the kernel modules this image can need, not
``MODULES=most`` (Debian's default: every storage, filesystem and input driver of the kernel,
30 MB and ~20 s of a cold build): :func:`modules_for` chooses them from the disk layout, a
generic set that boots on any common machine -- the virtual and physical disk controllers
(virtio, NVMe, AHCI/ATA, SCSI disks, USB storage, MMC, Hyper-V, VMware, Xen) -- plus the
root filesystem's module, dm-verity, dm-crypt with its ciphers and the device-mapper for
LVM when the layout uses them. The configuration sets ``MODULES=list`` and a hook,
:data:`HOOK`, adds them with ``manual_add_modules`` (udev in the initramfs loads the drivers
of the devices it finds; mounting the root loads its filesystem). Hooks of other packages
add their own modules as always, and so does ``/etc/initramfs-tools/modules``: a spec that
needs another driver in the initramfs lists it there (``customizations.files``).

Both run with ``SOURCE_DATE_EPOCH`` = the build epoch: mkinitramfs then clamps the times of
everything it collects to it, writes the cpio archive with ``--reproducible`` (sorted, no
inode numbers) and compresses single-threaded, so the same tree and epoch give the same
initrd byte for byte (initramfs-tools 0.142); dracut honours it the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from imagecomposer.compose.configure import paths
from imagecomposer.compose.layout import Layout
from imagecomposer.foundation.epoch import epoch_env, resolve
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.events import EventSink, Progress
from imagecomposer.foundation.rootfs import Root
from imagecomposer.foundation.sandbox import run_in_chroot

log = logging.getLogger(__name__)

CONF = "/etc/initramfs-tools/conf.d/90-imagecomposer.conf"
HOOK = "/etc/initramfs-tools/hooks/imagecomposer-modules"
BOOT = "/boot"
RunInChroot = Callable[..., object]
ZSTD_LEVEL = 3
FSCK_TYPES = ("ext2", "ext3", "ext4", "xfs", "btrfs", "vfat")

# Disk controllers and buses a root disk can sit on (udev loads the ones present).
STORAGE_MODULES = (
    "virtio_pci", "virtio_blk", "virtio_scsi", "nvme", "ahci", "ata_piix", "sd_mod",
    "usb_storage", "uas", "xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd", "mmc_block",
    "sdhci_pci", "sdhci_acpi", "hv_storvsc", "vmw_pvscsi", "xen_blkfront")
# Each filesystem's module and the checksum modules it asks for (softdeps included).
FS_MODULES = {
    "ext4": ("ext4", "crc32c_generic", "crc32c_intel"),
    "ext3": ("ext4", "crc32c_generic", "crc32c_intel"),
    "ext2": ("ext4", "crc32c_generic", "crc32c_intel"),
    "xfs": ("xfs", "libcrc32c", "crc32c_generic", "crc32c_intel"),
    "btrfs": ("btrfs", "libcrc32c", "crc32c_generic", "crc32c_intel"),
    "squashfs": ("squashfs",),
    "erofs": ("erofs",),
    "vfat": ("vfat", "nls_cp437", "nls_ascii"),
}
VERITY_MODULES = ("dm_mod", "dm_verity")
LVM_MODULES = ("dm_mod", "dm_snapshot", "dm_mirror")
# dm-crypt, LUKS2's default cipher (aes-xts-plain64) and what cryptsetup reads key slots
# with (the kernel crypto API), and keyboards for a passphrase typed at the console.
LUKS_MODULES = ("dm_mod", "dm_crypt", "xts", "aesni_intel", "essiv", "sha256_ssse3",
                "sha512_ssse3", "af_alg", "algif_skcipher", "algif_hash", "usbhid",
                "hid_generic")


@attrs.frozen
class Kernel:
    version: str
    image: Path  # host path of the kernel in the tree (for messages: read it by image path)
    initrd: Path  # host path of the initrd in the tree (exists after build())

    @property
    def image_path(self) -> str:
        """The kernel's path inside the image (read it through :class:`Root`)."""
        return f"{BOOT}/vmlinuz-{self.version}"

    @property
    def initrd_path(self) -> str:
        """The initrd's path inside the image."""
        return f"{BOOT}/initrd.img-{self.version}"


def _version_key(version: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for chunk in version.replace("-", ".").split("."):
        out.append((int(chunk), "") if chunk.isdigit() else (-1, chunk))
    return out


def kernels(tree: Path) -> list[Kernel]:
    """Installed kernels (a /boot/vmlinuz-V with its /usr/lib/modules/V), newest first."""
    found = []
    with Root(tree) as root:
        if not root.is_dir(BOOT):
            return []
        boot = root.host_path(BOOT)
        for name in root.listdir(BOOT):
            version = name.removeprefix("vmlinuz-")
            if name.startswith("vmlinuz-") and root.is_dir(f"/usr/lib/modules/{version}"):
                found.append(Kernel(version, boot / name, boot / f"initrd.img-{version}"))
    return sorted(found, key=lambda k: _version_key(k.version), reverse=True)


def _counter(events: EventSink, what: str) -> Callable[[str], None]:
    """Each ``Adding ...`` line of a verbose mkinitramfs is one more file in the initramfs."""
    done = 0

    def seen(line: str) -> None:
        nonlocal done
        if line.startswith("Adding "):
            done += 1
            if done % 25 == 0:
                events(Progress(what, done, None, "files"))

    return seen


def compression(tree: Path) -> str:
    return "zstd" if paths.installed(tree, "/usr/bin/zstd") else "gzip"


def modules_for(layout: Layout) -> tuple[str, ...]:
    """The kernel modules the initramfs of an image with ``layout`` needs: the storage
    drivers, the root filesystem's module, and dm-verity, LVM and dm-crypt when the layout
    has them (sorted, each once)."""
    chosen = set(STORAGE_MODULES)
    chosen.update(FS_MODULES.get(layout.root.filesystem, (layout.root.filesystem,)))
    if layout.by_type("verity") is not None:
        chosen.update(VERITY_MODULES)
    if any(True for _ in layout.logical_volumes()):
        chosen.update(LVM_MODULES)
    if any(True for _ in layout.encrypted()):
        chosen.update(LUKS_MODULES)
    return tuple(sorted(chosen))


def hook_script(modules: tuple[str, ...]) -> str:
    """The initramfs-tools hook that adds ``modules`` (and their dependencies)."""
    return ("#!/bin/sh\n# written by imagecomposer: the kernel modules of this image's "
            "initramfs (MODULES=list in\n# " + CONF + "); udev loads the\n"
            "# drivers of the devices it finds. Add more in /etc/initramfs-tools/modules.\n"
            "PREREQ=\"\"\nprereqs() { echo \"$PREREQ\"; }\n"
            "case \"$1\" in prereqs) prereqs; exit 0;; esac\n"
            ". /usr/share/initramfs-tools/hook-functions\n"
            "manual_add_modules " + " ".join(modules) + "\n")


def write_conf(tree: Path, root_fstype: str | None,
               modules: tuple[str, ...] | None = None) -> None:
    """initramfs-tools settings for the image: compression, the root filesystem type and,
    with ``modules``, ``MODULES=list`` and the hook that adds them (without: Debian's
    ``MODULES=most``)."""
    if not paths.installed(tree, "/usr/sbin/update-initramfs"):
        return
    conf = f"# written by imagecomposer\nCOMPRESS={compression(tree)}\n"
    if compression(tree) == "zstd":
        # initramfs-tools defaults zstd to -9: ~3x the time of -3 for 8 % less size
        # (measured: 46 s vs 14 s for linux-image-amd64 with MODULES=most).
        conf += f"COMPRESSLEVEL={ZSTD_LEVEL}\n"
    if root_fstype in FSCK_TYPES:
        conf += f"FSTYPE={root_fstype}\n"
    with Root(tree) as root:
        root.remove(HOOK)
        if modules:
            conf += "MODULES=list\n"
            root.write(HOOK, hook_script(modules).encode(), mode=0o755)
    paths.write(tree, CONF, conf)


def build(tree: Path, *, root_fstype: str | None = None, chroot: RunInChroot = run_in_chroot,
          timeout: float | None = None, epoch: int | None = None,
          events: EventSink | None = None,
          modules: tuple[str, ...] | None = None) -> list[Kernel]:
    """Generate the initrd of every installed kernel; return the kernels.

    ``events`` receives the files added to the initramfs as :class:`Progress` (the tool
    then runs verbosely: its output lines say what it adds).

    ``modules``: the kernel modules of an initramfs-tools image (:func:`modules_for`; None:
    ``MODULES=most``). ``root_fstype`` names the root filesystem for initramfs-tools' fsck
    hook: it cannot probe the not-yet-existing root device at build time (``FSTYPE=auto``
    would then leave fsck out of the initramfs, and the root filesystem would never be
    checked at boot).
    """
    found = kernels(tree)
    if not found:
        raise ComposeError("the image has no kernel (/boot/vmlinuz-*): add a kernel package")
    env = epoch_env(resolve(epoch))
    if paths.installed(tree, "/usr/sbin/update-initramfs"):
        write_conf(tree, root_fstype, modules)
        for kernel in found:
            with Root(tree) as root:
                root.remove(kernel.initrd_path)
            start = time.monotonic()
            argv = ["update-initramfs", "-c", "-k", kernel.version]
            extra: dict[str, Callable[[str], None]] = {}
            if events is not None:
                argv.append("-v")
                extra["on_output"] = _counter(events, f"initramfs {kernel.version}")
            chroot(tree, argv, env=env, what=f"update-initramfs {kernel.version}",
                   timeout=timeout, **extra)
            log.info("initramfs for %s built in %.1f s", kernel.version, time.monotonic() - start)
    elif paths.installed(tree, "/usr/bin/dracut"):
        for kernel in found:
            chroot(tree, ["dracut", "--force", "--no-hostonly", f"--{compression(tree)}",
                          kernel.initrd_path, kernel.version], env=env,
                   what=f"dracut {kernel.version}", timeout=timeout)
    else:
        raise ComposeError("the image has neither initramfs-tools nor dracut: "
                           "cannot build an initramfs")
    with Root(tree) as root:
        missing = [k.version for k in found if not root.is_file(k.initrd_path)]
    if missing:
        raise ComposeError(f"no initramfs was generated for kernel {', '.join(missing)}")
    return found

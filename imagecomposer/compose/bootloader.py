"""Bootloader files: the ESP tree for systemd-boot (first choice) or GRUB (EFI).

Everything is written into a plain directory, the ESP tree, that disk assembly copies into
the FAT filesystem with mtools (the host kernel has no vfat driver: nothing is mounted). The
kernel and initrd are copied into the ESP (Boot Loader Specification layout
``/<entry-token>/<kernel version>/{linux,initrd}``), so the bootloader reads only FAT.

Hooks:

- Secure Boot: with ``customizations.security.secure_boot`` every EFI binary written here
  (bootloader, fallback loader and kernel) goes through
  :func:`imagecomposer.sign.sign_efi`, signing time the build epoch.
- dm-verity: the root hash is known only after disk assembly formatted the root filesystem;
  :func:`kernel_cmdline` takes it (``roothash=``) and :func:`rewrite_entries` updates the
  written entries before the ESP is assembled.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import attrs

from imagecomposer.compose.initramfs import Kernel
from imagecomposer.compose.layout import (
    Layout,
    PlannedLogicalVolume,
    PlannedPartition,
    volume_device,
)
from imagecomposer.compose.secureboot import sign_efi
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.rootfs import Root
from imagecomposer.foundation.sandbox import run_in_chroot
from imagecomposer.spec.model import Spec

EFI_ARCH = {"x86_64": ("x64", "x86_64-efi"), "aarch64": ("aa64", "arm64-efi")}
SYSTEMD_BOOT_DIRS = ("/usr/lib/systemd/boot/efi", "/lib/systemd/boot/efi")
GRUB_MODULES = (
    "normal", "linux", "fat", "part_gpt", "part_msdos", "search", "search_fs_uuid",
    "configfile", "echo", "test", "all_video", "gzio", "serial", "terminal", "ls", "cat",
)


def entry_token(spec: Spec) -> str:
    """The BLS entry token: the image name made safe for a FAT path."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", spec.image.name) or "imagecomposer"


def kernel_cmdline(spec: Spec, layout: Layout, *, roothash: str | None = None) -> str:
    """``root=`` (by filesystem UUID, the dm-verity device, or the /dev/mapper name of a
    logical volume or opened LUKS2 container), ``ro``, what a dracut initrd needs to open
    such a root, the spec's command line, and the serial console when asked for."""
    root = layout.root
    kernel = spec.customizations.kernel
    if roothash is not None:
        verity = layout.by_type("verity")
        if verity is None:
            raise ComposeError("dm-verity root hash given but the layout has no verity partition")
        words = ["root=/dev/mapper/root", f"roothash={roothash}",
                 f"systemd.verity_root_data=PARTUUID={layout.root_partition.partuuid}",
                 f"systemd.verity_root_hash=PARTUUID={verity.partuuid}", "ro"]
    else:
        words = [f"root={volume_device(root)}", "ro", *stacked_root_words(layout)]
    if root.filesystem in ("squashfs", "erofs"):
        words.append(f"rootfstype={root.filesystem}")
    if spec.customizations.security.selinux != "disabled":
        words += ["security=selinux", "selinux=1",
                  f"enforcing={1 if spec.customizations.security.selinux == 'enforcing' else 0}"]
    if kernel.serial_console:
        words += ["console=tty0", "console=ttyS0,115200"]
    words += kernel.cmdline.split()
    return " ".join(dedupe_words(words))


def dedupe_words(words: list[str]) -> list[str]:
    """Each word once, at its LAST place: the spec's ``console=ttyS0,115200`` repeating what
    ``serial_console`` adds appears once, and the order the spec gives wins (the last
    ``console=`` is the one /dev/console is)."""
    last = {word: i for i, word in enumerate(words)}
    return [word for i, word in enumerate(words) if last[word] == i]


def stacked_root_words(layout: Layout) -> list[str]:
    """``rd.luks.uuid=`` for each LUKS2 container the initrd opens and ``rd.lvm.lv=`` for a
    root logical volume: dracut's words (initramfs-tools ignores them: it reads crypttab's
    ``initramfs`` entries and activates volume groups from udev)."""
    words = [f"rd.luks.uuid={v.encryption.uuid}" for v in layout.encrypted()
             if v.encryption is not None and v.encryption.initramfs]
    root = layout.root
    if isinstance(root, PlannedLogicalVolume):
        words.append(f"rd.lvm.lv={root.vg}/{root.name}")
    return words


def _copy_kernels(tree: Root, esp: Root, token: str,
                  kernels: list[Kernel]) -> list[tuple[Kernel, str, str]]:
    """Kernel and initrd from the image tree (read inside it) into the ESP tree."""
    placed = []
    for kernel in kernels:
        linux, initrd = f"/{token}/{kernel.version}/linux", f"/{token}/{kernel.version}/initrd"
        tree.copy_to(kernel.image_path, esp, linux, mode=0o644)
        tree.copy_to(kernel.initrd_path, esp, initrd, mode=0o644)
        placed.append((kernel, linux, initrd))
    return placed


def _sign(spec: Spec, binaries: list[Path], epoch: int | None) -> None:
    secure_boot = spec.customizations.security.secure_boot
    if secure_boot is None:
        return
    for binary in binaries:
        sign_efi(binary, secure_boot.key, secure_boot.cert, epoch=epoch)


def systemd_boot(tree: Path, esp: Path, spec: Spec, layout: Layout,
                 kernels: list[Kernel], *, roothash: str | None = None,
                 epoch: int | None = None) -> list[Path]:
    """Populate ``esp`` for systemd-boot; return the EFI binaries written (for signing)."""
    suffix, _ = EFI_ARCH[spec.image.base.arch]
    name = f"systemd-boot{suffix}.efi"
    esp.mkdir(parents=True, exist_ok=True)  # the ESP tree: a directory of ours
    with Root(tree) as image, Root(esp) as esp_root:
        source = next((f"{d}/{name}" for d in SYSTEMD_BOOT_DIRS
                       if image.is_file(f"{d}/{name}")), None)
        if source is None:
            raise ComposeError(f"bootloader systemd-boot needs {name} in the image: add the "
                               "package systemd-boot (Debian 12: systemd-boot-efi)")
        token = entry_token(spec)
        binaries = [image.copy_to(source, esp_root, target, mode=0o644)
                    for target in (f"/EFI/systemd/{name}", f"/EFI/BOOT/BOOT{suffix.upper()}.EFI")]
        placed = _copy_kernels(image, esp_root, token, kernels)
        esp_root.mkdir("/loader/entries")
        esp_root.write("/loader/loader.conf",
                       f"# written by imagecomposer\ndefault {token}-*\ntimeout 0\n"
                       "console-mode keep\neditor no\n")
        esp_root.write("/loader/entries.srel", "type1\n")
        cmdline = kernel_cmdline(spec, layout, roothash=roothash)
        for kernel, linux, initrd in placed:
            esp_root.write(f"/loader/entries/{token}-{kernel.version}.conf",
                           f"title {spec.image.name} {spec.image.version}\n"
                           f"version {kernel.version}\nlinux {linux}\ninitrd {initrd}\n"
                           f"options {cmdline}\n")
        binaries += [esp_root.host_path(linux) for _, linux, _ in placed]
    _sign(spec, binaries, epoch)
    return binaries


def rewrite_entries(esp: Path, cmdline: str) -> list[Path]:
    """Replace the kernel command line of every entry (systemd-boot and GRUB) in ``esp``;
    the dm-verity hook, run once the root hash is known."""
    changed = []
    with Root(esp) as root:
        entries = root.listdir("/loader/entries") if root.is_dir("/loader/entries") else []
        for name in (n for n in entries if n.endswith(".conf")):
            entry = f"/loader/entries/{name}"
            text = re.sub(r"^options .*$", f"options {cmdline}", root.read_text(entry),
                          flags=re.M)
            changed.append(root.write(entry, text))
        grub_cfg = "/EFI/BOOT/grub.cfg"
        if root.is_file(grub_cfg):
            text = re.sub(r"^(\s*linux\s+\S+) .*$", lambda m: f"{m.group(1)} {cmdline}",
                          root.read_text(grub_cfg), flags=re.M)
            changed.append(root.write(grub_cfg, text))
    return changed


def grub_config(spec: Spec, layout: Layout, placed: list[tuple[Kernel, str, str]],
                *, roothash: str | None = None) -> str:
    lines = ["# written by imagecomposer", "set timeout=0", "set default=0"]
    if spec.customizations.kernel.serial_console:
        lines += ["serial --unit=0 --speed=115200", "terminal_input serial console",
                  "terminal_output serial console"]
    cmdline = kernel_cmdline(spec, layout, roothash=roothash)
    for kernel, linux, initrd in placed:
        lines += [f"menuentry '{spec.image.name} {spec.image.version} ({kernel.version})' {{",
                  f"\tlinux {linux} {cmdline}", f"\tinitrd {initrd}", "}"]
    return "\n".join(lines) + "\n"


def grub_efi(tree: Path, esp: Path, spec: Spec, layout: Layout, kernels: list[Kernel], *,
             roothash: str | None = None, epoch: int | None = None) -> list[Path]:
    """A standalone GRUB EFI image (``grub-mkimage`` from the image's own GRUB, run in the
    chroot so tool and modules match) at the fallback path, with grub.cfg next to it."""
    suffix, platform = EFI_ARCH[spec.image.base.arch]
    esp.mkdir(parents=True, exist_ok=True)  # the ESP tree: a directory of ours
    with Root(tree) as image, Root(esp) as esp_root:
        if not image.is_dir(f"/usr/lib/grub/{platform}"):
            raise ComposeError(f"bootloader grub needs the GRUB {platform} modules in the "
                               "image: add the package grub-efi-amd64-bin")
        if not image.exists("/usr/bin/grub-mkimage"):
            raise ComposeError("bootloader grub needs grub-mkimage in the image (grub-common)")
        token = entry_token(spec)
        placed = _copy_kernels(image, esp_root, token, kernels)
        inner = "/tmp/imagecomposer-grub.efi"
        try:
            run_in_chroot(tree, ["grub-mkimage", "-O", platform, "-p", "/EFI/BOOT",
                                 "-o", inner, *GRUB_MODULES], what="grub-mkimage")
            target = image.copy_to(inner, esp_root, f"/EFI/BOOT/BOOT{suffix.upper()}.EFI",
                                   mode=0o644)
        finally:
            image.remove(inner)
        esp_root.write("/EFI/BOOT/grub.cfg", grub_config(spec, layout, placed, roothash=roothash))
        binaries = [target] + [esp_root.host_path(linux) for _, linux, _ in placed]
    _sign(spec, binaries, epoch)
    return binaries


def install(tree: Path, esp: Path, spec: Spec, layout: Layout, kernels: list[Kernel], *,
            roothash: str | None = None, epoch: int | None = None) -> list[Path]:
    """Write the spec's bootloader into ``esp``; return the EFI binaries written (signed
    for Secure Boot at ``epoch``, default the build epoch, when the spec asks).

    (GRUB for BIOS, on MBR disks without an ESP, is :func:`grub_bios` instead.)"""
    loader = spec.customizations.bootloader
    if loader == "none":
        return []
    if layout.esp is None:
        raise ComposeError(f"bootloader {loader} needs an ESP partition (type: esp) in the "
                           "disk layout")
    if loader == "systemd-boot":
        return systemd_boot(tree, esp, spec, layout, kernels, roothash=roothash, epoch=epoch)
    return grub_efi(tree, esp, spec, layout, kernels, roothash=roothash, epoch=epoch)


# --- GRUB for BIOS (MBR disks) -----------------------------------------------------------------

BIOS_PLATFORM = "i386-pc"
BIOS_MODULES = (
    "biosdisk", "part_msdos", "part_gpt", "ext2", "xfs", "normal", "linux", "search",
    "search_fs_uuid", "configfile", "echo", "test", "serial", "terminal", "gzio", "ls", "cat",
)
# Offsets in GRUB's boot.img (include/grub/i386/pc/boot.h).
BOOT_KERNEL_SECTOR = 0x5C  # uint64 LBA of core.img's first sector
BOOT_DRIVE_CHECK = 0x66  # 2-byte jump replaced by NOPs on hard disks (grub-bios-setup does)
MBR_CODE_SIZE = 440  # boot code; then disk signature, partition table, 0x55AA
CORE_LBA = 1


@attrs.frozen
class BiosBoot:
    """What GRUB needs on an MBR disk: boot code for sector 0 and core.img from sector 1."""

    boot_code: bytes  # exactly MBR_CODE_SIZE bytes, patched to load core.img from CORE_LBA
    core_img: bytes


def patch_boot_img(boot_img: bytes) -> bytes:
    """boot.img with the fields grub-bios-setup sets for a core.img embedded after the MBR."""
    if len(boot_img) != 512 or boot_img[510:] != b"\x55\xaa":
        raise ComposeError("GRUB boot.img is not a 512-byte boot sector")
    code = bytearray(boot_img[:MBR_CODE_SIZE])
    struct.pack_into("<Q", code, BOOT_KERNEL_SECTOR, CORE_LBA)
    code[BOOT_DRIVE_CHECK:BOOT_DRIVE_CHECK + 2] = b"\x90\x90"
    return bytes(code)


def core_blocklist(core_img: bytes) -> tuple[int, int, int]:
    """(start LBA, sectors, segment) of the blocklist at the end of core.img's first sector,
    which grub-mkimage fills for a core.img that directly follows its first sector."""
    return struct.unpack_from("<QHH", core_img, 512 - 12)


def grub_bios(tree: Path, spec: Spec, layout: Layout, kernels: list[Kernel], *,
              out: Path) -> BiosBoot:
    """GRUB for BIOS on an MBR disk: ``/boot/grub/grub.cfg`` in the root tree and a core.img
    (every module embedded, so nothing but grub.cfg is read from the root filesystem) that
    finds the root filesystem by UUID. The images are also saved in ``out`` (boot.bin,
    core.img) for :func:`write_bios_boot` after disk assembly."""
    if layout.table != "mbr":
        raise ComposeError("GRUB for BIOS needs an MBR partition table (GPT would need a BIOS "
                           "boot partition); or add an ESP for UEFI")
    boot_img = f"/usr/lib/grub/{BIOS_PLATFORM}/boot.img"
    with Root(tree) as image:
        if not image.is_file(boot_img):
            raise ComposeError("bootloader grub on a BIOS (MBR, no ESP) disk needs the package "
                               "grub-pc-bin in the image")
        if not image.exists("/usr/bin/grub-mkimage"):
            raise ComposeError("bootloader grub needs grub-mkimage in the image (grub-common)")
        placed = [(k, k.image_path, k.initrd_path) for k in kernels]
        image.write("/boot/grub/grub.cfg", grub_config(spec, layout, placed))
        early = "/tmp/imagecomposer-grub-early.cfg"
        inner = "/tmp/imagecomposer-core.img"
        root = layout.root
        if not isinstance(root, PlannedPartition) or root.encryption is not None:
            raise ComposeError("GRUB on mbr (BIOS) reads the kernel from the root filesystem, "
                               "which cannot be on LVM or LUKS2: use gpt with an ESP")
        image.write(early, f"search --no-floppy --fs-uuid --set=root {root.fsuuid}\n"
                    "set prefix=($root)/boot/grub\n")
        try:
            run_in_chroot(tree, ["grub-mkimage", "-O", BIOS_PLATFORM, "-p", "/boot/grub",
                                 "-c", early, "-o", inner, *BIOS_MODULES], what="grub-mkimage")
            core = image.read_bytes(inner)
        finally:
            image.remove(inner)
            image.remove(early)
        boot_code = image.read_bytes(boot_img)
    first = min(p.start for p in layout.partitions)
    if 512 * CORE_LBA + len(core) > first:
        raise ComposeError(f"GRUB core.img ({len(core)} B) does not fit before the first "
                           f"partition at {first} B")
    start, sectors, _ = core_blocklist(core)
    if start != CORE_LBA + 1 or sectors != -(-len(core) // 512) - 1:
        raise ComposeError(f"unexpected GRUB core.img blocklist (start {start}, {sectors} "
                           "sectors)")
    boot = BiosBoot(patch_boot_img(boot_code), core)
    out.mkdir(parents=True, exist_ok=True)
    (out / "boot.bin").write_bytes(boot.boot_code)
    (out / "core.img").write_bytes(boot.core_img)
    return boot


def read_bios_boot(directory: Path) -> BiosBoot | None:
    if not (directory / "core.img").is_file():
        return None
    return BiosBoot((directory / "boot.bin").read_bytes(), (directory / "core.img").read_bytes())


def write_bios_boot(disk: Path, boot: BiosBoot) -> None:
    """Write GRUB's boot code into the MBR (keeping the disk signature and the partition
    table) and core.img right after it. Plain file writes: no loop device."""
    with disk.open("r+b") as f:
        sector = f.read(512)
        if sector[510:] != b"\x55\xaa":
            raise ComposeError(f"{disk} has no MBR partition table to add GRUB to")
        f.seek(0)
        f.write(boot.boot_code)
        f.seek(512 * CORE_LBA)
        f.write(boot.core_img)

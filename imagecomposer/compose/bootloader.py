"""Bootloader files: the ESP tree for systemd-boot (first choice) or GRUB (EFI).

Everything is written into a plain directory, the ESP tree, that disk assembly copies into
the FAT filesystem with mtools (the host kernel has no vfat driver: nothing is mounted). The
kernel and initrd are copied into the ESP (Boot Loader Specification layout
``/<entry-token>/<kernel version>/{linux,initrd}``), so the bootloader reads only FAT.

Hooks:

- Secure Boot: with ``customizations.security.secure_boot`` every EFI binary written here
  (bootloader, fallback loader and kernel) goes through
  :func:`imagecomposer.compose.signing.sign_efi`.
- dm-verity: the root hash is known only after disk assembly formatted the root filesystem;
  :func:`kernel_cmdline` takes it (``roothash=``) and :func:`rewrite_entries` updates the
  written entries before the ESP is assembled.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from imagecomposer.compose.chroot import run_in_chroot
from imagecomposer.compose.configure import paths
from imagecomposer.compose.initramfs import Kernel
from imagecomposer.compose.layout import Layout
from imagecomposer.compose.signing import sign_efi
from imagecomposer.errors import ComposeError
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
    """``root=`` (by filesystem UUID, or the dm-verity device), ``ro``, the spec's command
    line, and the serial console when asked for."""
    root = layout.root
    kernel = spec.customizations.kernel
    if roothash is not None:
        verity = layout.by_type("verity")
        if verity is None:
            raise ComposeError("dm-verity root hash given but the layout has no verity partition")
        words = ["root=/dev/mapper/root", f"roothash={roothash}",
                 f"systemd.verity_root_data=PARTUUID={root.partuuid}",
                 f"systemd.verity_root_hash=PARTUUID={verity.partuuid}", "ro"]
    else:
        words = [f"root=UUID={root.fsuuid}", "ro"]
    if root.filesystem in ("squashfs", "erofs"):
        words.append(f"rootfstype={root.filesystem}")
    if spec.customizations.security.selinux != "disabled":
        words += ["security=selinux", "selinux=1",
                  f"enforcing={1 if spec.customizations.security.selinux == 'enforcing' else 0}"]
    if kernel.serial_console:
        words += ["console=tty0", "console=ttyS0,115200"]
    words += kernel.cmdline.split()
    return " ".join(words)


def _copy_kernels(esp: Path, token: str, kernels: list[Kernel]) -> list[tuple[Kernel, str, str]]:
    placed = []
    for kernel in kernels:
        directory = esp / token / kernel.version
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kernel.image, directory / "linux")
        shutil.copyfile(kernel.initrd, directory / "initrd")
        placed.append((kernel, f"/{token}/{kernel.version}/linux",
                       f"/{token}/{kernel.version}/initrd"))
    return placed


def _sign(spec: Spec, binaries: list[Path]) -> None:
    secure_boot = spec.customizations.security.secure_boot
    if secure_boot is None:
        return
    for binary in binaries:
        sign_efi(binary, secure_boot.key, secure_boot.cert)


def systemd_boot(tree: Path, esp: Path, spec: Spec, layout: Layout,
                 kernels: list[Kernel], *, roothash: str | None = None) -> list[Path]:
    """Populate ``esp`` for systemd-boot; return the EFI binaries written (for signing)."""
    suffix, _ = EFI_ARCH[spec.image.base.arch]
    name = f"systemd-boot{suffix}.efi"
    source = next((paths.inside(tree, f"{d}/{name}") for d in SYSTEMD_BOOT_DIRS
                   if paths.inside(tree, f"{d}/{name}").is_file()), None)
    if source is None:
        raise ComposeError(f"bootloader systemd-boot needs {name} in the image: add the "
                           "package systemd-boot (Debian 12: systemd-boot-efi)")
    token = entry_token(spec)
    binaries = [esp / "EFI/systemd" / name, esp / "EFI/BOOT" / f"BOOT{suffix.upper()}.EFI"]
    for target in binaries:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    placed = _copy_kernels(esp, token, kernels)
    (esp / "loader/entries").mkdir(parents=True, exist_ok=True)
    (esp / "loader/loader.conf").write_text(
        f"# written by imagecomposer\ndefault {token}-*\ntimeout 0\nconsole-mode keep\n"
        "editor no\n")
    (esp / "loader/entries.srel").write_text("type1\n")
    cmdline = kernel_cmdline(spec, layout, roothash=roothash)
    for kernel, linux, initrd in placed:
        (esp / "loader/entries" / f"{token}-{kernel.version}.conf").write_text(
            f"title {spec.image.name} {spec.image.version}\nversion {kernel.version}\n"
            f"linux {linux}\ninitrd {initrd}\noptions {cmdline}\n")
    binaries += [esp / token / k.version / "linux" for k, _, _ in placed]
    _sign(spec, binaries)
    return binaries


def rewrite_entries(esp: Path, cmdline: str) -> list[Path]:
    """Replace the kernel command line of every entry (systemd-boot and GRUB) in ``esp``;
    the dm-verity hook, run once the root hash is known."""
    changed = []
    for entry in sorted((esp / "loader/entries").glob("*.conf")):
        text = re.sub(r"^options .*$", f"options {cmdline}", entry.read_text(), flags=re.M)
        entry.write_text(text)
        changed.append(entry)
    grub_cfg = esp / "EFI/BOOT/grub.cfg"
    if grub_cfg.is_file():
        text = re.sub(r"^(\s*linux\s+\S+) .*$", lambda m: f"{m.group(1)} {cmdline}",
                      grub_cfg.read_text(), flags=re.M)
        grub_cfg.write_text(text)
        changed.append(grub_cfg)
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
             roothash: str | None = None) -> list[Path]:
    """A standalone GRUB EFI image (``grub-mkimage`` from the image's own GRUB, run in the
    chroot so tool and modules match) at the fallback path, with grub.cfg next to it."""
    suffix, platform = EFI_ARCH[spec.image.base.arch]
    if not paths.inside(tree, f"/usr/lib/grub/{platform}").is_dir():
        raise ComposeError(f"bootloader grub needs the GRUB {platform} modules in the image: "
                           "add the package grub-efi-amd64-bin")
    if not paths.installed(tree, "/usr/bin/grub-mkimage"):
        raise ComposeError("bootloader grub needs grub-mkimage in the image (grub-common)")
    token = entry_token(spec)
    placed = _copy_kernels(esp, token, kernels)
    boot_dir = esp / "EFI/BOOT"
    boot_dir.mkdir(parents=True, exist_ok=True)
    inner = "/tmp/imagecomposer-grub.efi"
    try:
        run_in_chroot(tree, ["grub-mkimage", "-O", platform, "-p", "/EFI/BOOT",
                             "-o", inner, *GRUB_MODULES], what="grub-mkimage")
        target = boot_dir / f"BOOT{suffix.upper()}.EFI"
        shutil.move(paths.inside(tree, inner), target)
    finally:
        paths.inside(tree, inner).unlink(missing_ok=True)
    (boot_dir / "grub.cfg").write_text(grub_config(spec, layout, placed, roothash=roothash))
    binaries = [target] + [esp / token / k.version / "linux" for k, _, _ in placed]
    _sign(spec, binaries)
    return binaries


def install(tree: Path, esp: Path, spec: Spec, layout: Layout, kernels: list[Kernel], *,
            roothash: str | None = None) -> list[Path]:
    """Write the spec's bootloader into ``esp``; return the EFI binaries written."""
    loader = spec.customizations.bootloader
    if loader == "none":
        return []
    if layout.esp is None:
        raise ComposeError(f"bootloader {loader} needs an ESP partition (type: esp) in the "
                           "disk layout")
    if loader == "systemd-boot":
        return systemd_boot(tree, esp, spec, layout, kernels, roothash=roothash)
    return grub_efi(tree, esp, spec, layout, kernels, roothash=roothash)

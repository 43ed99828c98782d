"""A tiny, real, bootable image that proves boot testing works on this machine.

It is made from three Debian packages fetched with ``apt-get download`` (so from the
mirror of the host's apt sources): the distribution kernel, ``busybox-static`` and
``systemd-boot-efi``. The ESP holds systemd-boot as the removable-media loader
(``EFI/BOOT/BOOTX64.EFI``), one loader entry, the kernel and an initramfs whose ``/init``
prints the kernel version, markers from the command line, and ``<name> login:`` on the
serial console, then powers off. A small ext4 root partition carries files for offline
checks. The disk is assembled by :mod:`imagecomposer.compose.disk`, so this also exercises
the no-loop assembly end to end.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import attrs
import libarchive

from imagecomposer.compose.disk import AssemblyResult, assemble, plan_layout
from imagecomposer.compose.disk.table import write_boot_code
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import BootError, BootToolError
from imagecomposer.spec.model import Disk, Partition

MIB = 1 << 20
LOGIN = "testimage login:"
INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
echo "selftest: kernel $(/bin/busybox uname -r)"
for word in $(/bin/busybox cat /proc/cmdline); do
    case "$word" in selftest.marker=*) echo "selftest: marker ${word#selftest.marker=}";; esac
done
echo
echo "testimage login: "
/bin/busybox sleep 2
/bin/busybox poweroff -f
"""


@attrs.frozen
class SelftestInputs:
    """Files taken from the Debian packages."""

    kernel: Path  # vmlinuz
    busybox: Path  # static busybox binary
    systemd_boot: Path  # systemd-bootx64.efi
    syslinux: Path  # the mtools-based syslinux installer (BIOS images)
    mbr: Path  # syslinux's mbr.bin


def fetch_inputs(cache: Path) -> SelftestInputs:
    """Download (once) and unpack what the self-test image needs into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    found_inputs = SelftestInputs(cache / "vmlinuz", cache / "busybox",
                                  cache / "systemd-bootx64.efi", cache / "syslinux",
                                  cache / "mbr.bin")
    if all(p.is_file() for p in attrs.astuple(found_inputs)):
        return found_inputs
    depends = runner.run(["apt-cache", "depends", "linux-image-amd64"], capture=True,
                         error=BootToolError).stdout.decode()
    found = re.search(r"Depends:\s*(linux-image-[0-9][^\s]*-amd64)", depends)
    if found is None:
        raise BootError("cannot find the kernel package linux-image-amd64 depends on")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = Path(tmp)
        runner.run(["apt-get", "download", found.group(1), "busybox-static",
                    "systemd-boot-efi", "syslinux", "syslinux-common"], cwd=work,
                   error=BootToolError, what="apt-get download")
        debs = {p.name.split("_")[0]: p for p in work.glob("*.deb")}
        tree = work / "tree"
        for name, members in ((found.group(1), ["./boot/vmlinuz-*"]),
                              ("busybox-static", ["./bin/busybox"]),
                              ("systemd-boot-efi", ["./usr/lib/systemd/boot/efi/*x64.efi"]),
                              ("syslinux", ["./usr/bin/syslinux"]),
                              ("syslinux-common", ["./usr/lib/syslinux/mbr/mbr.bin"])):
            tree.mkdir(exist_ok=True)
            _unpack(debs[name], tree, members)
        shutil.copyfile(tree / "usr/lib/systemd/boot/efi/systemd-bootx64.efi",
                        found_inputs.systemd_boot)
        shutil.copyfile(tree / "usr/lib/syslinux/mbr/mbr.bin", found_inputs.mbr)
        for source, target in ((tree / "bin" / "busybox", found_inputs.busybox),
                               (tree / "usr/bin/syslinux", found_inputs.syslinux)):
            shutil.copyfile(source, target)
            target.chmod(0o755)
        # the kernel last: its presence marks a complete cache
        shutil.copyfile(next((tree / "boot").glob("vmlinuz-*")), found_inputs.kernel)
    return found_inputs


def _unpack(deb: Path, target: Path, members: list[str]) -> None:
    # dpkg-deb streams the data tarball; tar extracts only the members we need.
    runner.run(["sh", "-c", 'deb="$1"; dir="$2"; shift 2; '
                'dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards "$@"',
                "unpack", deb, target, *members], error=BootToolError,
               what=f"unpack {deb.name}")


def write_initramfs(busybox: Path, target: Path) -> None:
    """A newc cpio with /init and a static busybox (libarchive writes the archive)."""
    data = busybox.read_bytes()
    init = INIT.encode()
    with libarchive.file_writer(str(target), "cpio_newc") as archive:
        for directory in ("bin", "dev", "proc", "sys"):
            archive.add_file_from_memory(directory, 0, b"",
                                         filetype=libarchive.entry.FileType.DIRECTORY,
                                         permission=0o755, uid=0, gid=0, mtime=0)
        archive.add_file_from_memory("init", len(init), init, permission=0o755, uid=0, gid=0,
                                     mtime=0)
        archive.add_file_from_memory("bin/busybox", len(data), data, permission=0o755, uid=0,
                                     gid=0, mtime=0)


def build_selftest_image(inputs: SelftestInputs, output: Path, *, workdir: Path,
                         marker: str = "ok", sign: tuple[Path, Path] | None = None,
                         firmware: str = "uefi") -> AssemblyResult:
    """Assemble the self-test disk at ``output``; with ``sign=(key, cert)`` the loader and
    the kernel are signed with ``sbsign`` for Secure Boot. ``firmware="bios"`` makes an
    MBR disk booted by syslinux instead of a GPT disk with systemd-boot."""
    workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="selftest-", dir=workdir))
    try:
        if firmware == "bios":
            return _bios_image(inputs, output, work, marker)
        esp = work / "esp"
        (esp / "EFI" / "BOOT").mkdir(parents=True)
        (esp / "loader" / "entries").mkdir(parents=True)
        loader = esp / "EFI" / "BOOT" / "BOOTX64.EFI"
        shutil.copyfile(inputs.systemd_boot, loader)
        shutil.copyfile(inputs.kernel, esp / "vmlinuz")
        if sign is not None:
            for binary in (loader, esp / "vmlinuz"):
                _sbsign(binary, *sign)
        write_initramfs(inputs.busybox, esp / "initrd.img")
        (esp / "loader" / "loader.conf").write_text("default selftest.conf\ntimeout 0\n")
        (esp / "loader" / "entries" / "selftest.conf").write_text(
            "title imagecomposer self-test\nlinux /vmlinuz\ninitrd /initrd.img\n"
            f"options console=ttyS0 loglevel=3 panic=-1 selftest.marker={marker}\n")
        root = work / "root"
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "hostname").write_text("testimage\n")
        disk = Disk(size=None, partition_table="gpt",
                    partitions=(Partition("esp", "esp", 48 * MIB),
                                Partition("root", "root", 16 * MIB)))
        layout = plan_layout(disk, seed=f"selftest:{marker}")
        return assemble(layout, {"esp": esp, "root": root}, output, workdir=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bios_image(inputs: SelftestInputs, output: Path, work: Path,
                marker: str) -> AssemblyResult:
    """MBR disk, one active FAT partition with syslinux (installed with mtools, no mount),
    syslinux's mbr.bin as boot code."""
    boot_tree = work / "boot"
    boot_tree.mkdir()
    shutil.copyfile(inputs.kernel, boot_tree / "vmlinuz")
    write_initramfs(inputs.busybox, boot_tree / "initrd.img")
    (boot_tree / "syslinux.cfg").write_text(
        "SERIAL 0 115200\nDEFAULT selftest\nPROMPT 0\nTIMEOUT 0\nLABEL selftest\n"
        "  KERNEL /vmlinuz\n"
        f"  APPEND initrd=/initrd.img console=ttyS0 loglevel=3 panic=-1 "
        f"selftest.marker={marker}\n")
    disk = Disk(size=None, partition_table="mbr",
                partitions=(Partition("boot", "xbootldr", 48 * MIB),))
    layout = plan_layout(disk, seed=f"selftest-bios:{marker}")
    staged = work / "disk.raw"
    result = assemble(layout, {"boot": boot_tree}, staged, workdir=work)
    runner.run([inputs.syslinux, "--install", "--offset", str(layout.partitions[0].start),
                staged], env={"MTOOLS_SKIP_CHECK": "1"}, error=BootToolError,
               what="syslinux --install")
    write_boot_code(staged, inputs.mbr.read_bytes())
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(staged, output)
    return attrs.evolve(result, output=output.absolute())


def _sbsign(binary: Path, key: Path, cert: Path) -> None:
    runner.require("sbsign", "sbsigntool")
    signed = binary.with_name(binary.name + ".signed")
    runner.run(["sbsign", "--key", key, "--cert", cert, "--output", signed, binary],
               error=BootToolError, what=f"sbsign {binary.name}")
    signed.replace(binary)

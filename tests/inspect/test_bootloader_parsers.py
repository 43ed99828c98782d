"""Boot entries of loaders imagecomposer does not write (images from other tools)."""

from __future__ import annotations

from imagecomposer.inspect.bootloader import grub_entries, pe_sections, syslinux_entries
from tests.inspect.conftest import minimal_pe

GRUB_CFG = """
set default="0"
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-x' {
	load_video
	if [ x$grub_platform = xxen ]; then insmod xzio; fi
	linux	/boot/vmlinuz-6.1.0-18-cloud-amd64 root=PARTUUID=abc ro console=ttyS0,115200
	initrd	/boot/initrd.img-6.1.0-18-cloud-amd64
}
submenu 'Advanced options' {
	menuentry "Debian, with Linux 6.1.0-17 (recovery mode)" {
		linux /boot/vmlinuz-6.1.0-17-cloud-amd64 root=PARTUUID=abc ro single
		initrd /boot/initrd.img-6.1.0-17-cloud-amd64 /boot/microcode.cpio
	}
}
menuentry 'UEFI Firmware Settings' { fwsetup }
"""

SYSLINUX_CFG = """SERIAL 0 115200
DEFAULT linux
LABEL linux
  KERNEL /vmlinuz
  APPEND initrd=/initrd.img console=ttyS0 quiet
LABEL rescue
  LINUX /vmlinuz-rescue
  INITRD /initrd-rescue.img
  APPEND single
"""


def test_grub_menu_entries() -> None:
    first, second = grub_entries("/boot/grub/grub.cfg", GRUB_CFG)
    assert (first.title, first.linux, first.initrds) == (
        "Debian GNU/Linux", "/boot/vmlinuz-6.1.0-18-cloud-amd64",
        ("/boot/initrd.img-6.1.0-18-cloud-amd64",))
    assert first.options == "root=PARTUUID=abc ro console=ttyS0,115200"
    assert second.title == "Debian, with Linux 6.1.0-17 (recovery mode)"
    assert second.initrds == ("/boot/initrd.img-6.1.0-17-cloud-amd64", "/boot/microcode.cpio")
    assert second.kind == "grub" and second.path == "/boot/grub/grub.cfg"


def test_syslinux_labels() -> None:
    first, second = syslinux_entries("esp:/syslinux.cfg", SYSLINUX_CFG)
    assert (first.id, first.linux, first.initrds, first.options) == (
        "linux", "/vmlinuz", ("/initrd.img",), "console=ttyS0 quiet")
    assert (second.linux, second.initrds, second.options) == (
        "/vmlinuz-rescue", ("/initrd-rescue.img",), "single")


def test_pe_sections() -> None:
    assert pe_sections(minimal_pe(b"payload")) == {".text": b"payload"}
    assert pe_sections(b"not a PE file") == {}

"""Open a dm-verity root in an initramfs-tools initrd (Debian, Ubuntu).

The kernel command line written for a verity root (:func:`imagecomposer.compose.bootloader.
kernel_cmdline`) uses systemd's words: ``roothash=``, ``systemd.verity_root_data=`` and
``systemd.verity_root_hash=``. A systemd initrd (dracut) acts on them through
systemd-veritysetup-generator; initramfs-tools ignores them, so for its images two files go
into the tree before the initramfs is built:

- a hook that copies ``veritysetup`` (with its libraries) and the ``dm-verity`` module into
  the initrd;
- a ``local-top`` script that reads those words from /proc/cmdline, resolves ``PARTUUID=``
  through /dev/disk/by-partuuid, runs ``veritysetup open DATA root HASH ROOTHASH`` and prints
  ``imagecomposer-verity: opened ...`` on the console, so ``root=/dev/mapper/root`` mounts.
  When the hash tree does not match, it panics (the initrd never mounts an unverified root).
"""

from __future__ import annotations

from pathlib import Path

from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.rootfs import paths

HOOK = "/etc/initramfs-tools/hooks/imagecomposer-verity"
SCRIPT = "/etc/initramfs-tools/scripts/local-top/imagecomposer-verity"
VERITYSETUP = ("/usr/sbin/veritysetup", "/sbin/veritysetup")
MAPPER_NAME = "root"
OPENED_MARKER = "imagecomposer-verity: opened"

HOOK_TEXT = """#!/bin/sh
# written by imagecomposer: veritysetup and dm-verity for the verity root script
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
for tool in /usr/sbin/veritysetup /sbin/veritysetup; do
    if [ -x "$tool" ]; then copy_exec "$tool" /sbin/veritysetup; break; fi
done
manual_add_modules dm-verity
"""

SCRIPT_TEXT = """#!/bin/sh
# written by imagecomposer: open the dm-verity protected root named on the kernel command
# line (roothash=, systemd.verity_root_data=, systemd.verity_root_hash=) as /dev/mapper/@NAME@
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /scripts/functions

roothash=""
data=""
hash=""
for word in $(cat /proc/cmdline); do
    case "$word" in
        roothash=*) roothash="${word#roothash=}" ;;
        systemd.verity_root_data=*) data="${word#systemd.verity_root_data=}" ;;
        systemd.verity_root_hash=*) hash="${word#systemd.verity_root_hash=}" ;;
    esac
done
[ -n "$roothash" ] || exit 0
[ -e /dev/mapper/@NAME@ ] && exit 0

device() {
    case "$1" in
        PARTUUID=*) echo "/dev/disk/by-partuuid/${1#PARTUUID=}" ;;
        UUID=*) echo "/dev/disk/by-uuid/${1#UUID=}" ;;
        *) echo "$1" ;;
    esac
}
data=$(device "$data")
hash=$(device "$hash")
if [ -z "$data" ] || [ -z "$hash" ]; then
    panic "imagecomposer-verity: roothash= without systemd.verity_root_data/hash="
fi

wait_for_udev 10
tries=0
while [ ! -b "$data" ] || [ ! -b "$hash" ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 30 ]; then
        panic "imagecomposer-verity: $data or $hash did not appear"
    fi
    sleep 1
done

modprobe -q dm-verity
# libdevmapper creates /dev/mapper/@NAME@ itself instead of waiting for udev rules
if DM_DISABLE_UDEV=1 veritysetup open "$data" @NAME@ "$hash" "$roothash"; then
    echo "@MARKER@ $data as /dev/mapper/@NAME@ (hash $hash, root hash $roothash)"
else
    panic "imagecomposer-verity: veritysetup open $data @NAME@ $hash failed"
fi
""".replace("@NAME@", MAPPER_NAME).replace("@MARKER@", OPENED_MARKER)


def install(tree: Path) -> list[Path]:
    """Write the hook and the ``local-top`` script into ``tree`` (before the initramfs is
    built); return them. Needs initramfs-tools and veritysetup (cryptsetup-bin) in the
    image."""
    if not paths.installed(tree, "/usr/sbin/update-initramfs"):
        raise ComposeError("read_only_root (dm-verity) is supported with initramfs-tools "
                           "images only: the image has no update-initramfs")
    if not paths.installed(tree, *VERITYSETUP):
        raise ComposeError("read_only_root (dm-verity) needs veritysetup in the image: add "
                           "the package cryptsetup-bin")
    return [paths.write(tree, HOOK, HOOK_TEXT, mode=0o755),
            paths.write(tree, SCRIPT, SCRIPT_TEXT, mode=0o755)]

"""/etc/crypttab for LUKS2 volumes, the embedded key files, and the initramfs settings that
unlock them at boot (Debian's cryptsetup-initramfs; dracut reads ``rd.luks.uuid=``).

One line per encrypted partition or logical volume: ``<name>_crypt UUID=<luks uuid> <key>
luks[,initramfs]``. The key is ``none`` (the passphrase is asked on the console: the
initramfs's ``askpass``, or systemd-ask-password after the root is mounted), or
``/etc/cryptsetup-keys.d/<name>_crypt.key`` when the spec embeds its key file
(``embed_key: true``; the file is written 0400 into the image).

``noauto`` marks a volume nothing at boot uses (no mount point, not swap, no volume
group): it is opened by hand (``cryptsetup open`` or ``systemctl start
systemd-cryptsetup@<name>``), never prompted for. ``initramfs`` marks what the initramfs must
open: the root's container, or the container
of the root's volume group. cryptsetup-initramfs's hook cannot find the root device at
build time (the image is not running), so it relies on that option; everything else is
opened by systemd-cryptsetup in the booted system. An embedded key for such a volume must
go into the initramfs: ``KEYFILE_PATTERN`` in ``/etc/cryptsetup-initramfs/conf-hook`` makes
the hook copy it, and ``UMASK=0077`` keeps the initramfs unreadable to other users. The
initramfs lies unencrypted on the ESP, so whoever has the image has the key: a convenience
for test images only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from imagecomposer.compose.configure import paths
from imagecomposer.compose.layout import Layout, PlannedPartition, Volume
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.rootfs import Root

CRYPTTAB = "/etc/crypttab"
KEY_DIR = "/etc/cryptsetup-keys.d"
CONF_HOOK = "/etc/cryptsetup-initramfs/conf-hook"
UMASK_CONF = "/etc/initramfs-tools/conf.d/90-imagecomposer-umask.conf"
CONF_HOOK_LINES = (f'\n# written by imagecomposer: embedded key files go into the initramfs\n'
                   f'KEYFILE_PATTERN="{KEY_DIR}/*.key"\n')


def key_path(mapper: str) -> str:
    return f"{KEY_DIR}/{mapper}.key"


def opened_at_boot(volume: Volume) -> bool:
    """Mounted, swap, or holding a volume group: else ``noauto`` (nobody would wait for a
    passphrase prompt of a volume the system does not use)."""
    if isinstance(volume, PlannedPartition) and volume.volume_group is not None:
        return True
    return volume.mountpoint is not None or volume.filesystem == "swap"


def render(layout: Layout) -> str:
    lines = ["# /etc/crypttab: written by imagecomposer from the disk layout",
             "# <target name>\t<source device>\t<key file>\t<options>"]
    for volume in layout.encrypted():
        enc = volume.encryption
        assert enc is not None
        key = key_path(enc.mapper) if enc.unlock == "key-file" else "none"
        options = ["luks"]
        if enc.initramfs:
            options.append("initramfs")
        if not opened_at_boot(volume):
            options.append("noauto")
        lines.append(f"{enc.mapper}\tUUID={enc.uuid}\t{key}\t{','.join(options)}")
    return "\n".join(lines) + "\n"


def configure(tree: Path, layout: Layout, keys: Mapping[str, Path]) -> list[Path]:
    """Write crypttab and the embedded key files (``keys``: mapper name -> key file on the
    build host) into ``tree``; return what was written. Nothing when nothing is encrypted."""
    encrypted = list(layout.encrypted())
    if not encrypted:
        return []
    if not paths.installed(tree, "/sbin/cryptsetup", "/usr/sbin/cryptsetup"):
        raise ComposeError("the disk layout encrypts volumes but the image has no cryptsetup: "
                           "add the package cryptsetup (Debian: cryptsetup-initramfs)")
    written = [paths.write(tree, CRYPTTAB, render(layout))]
    in_initramfs = False
    for volume in encrypted:
        enc = volume.encryption
        assert enc is not None
        if enc.unlock != "key-file":
            continue
        source = keys.get(enc.mapper)
        if source is None:
            raise ComposeError(f"'{volume.name}' embeds its key but no key_file was given")
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise ComposeError(f"cannot read the key file {source}: {exc.strerror}") from None
        with Root(tree) as root:
            root.mkdir(KEY_DIR, 0o700)
        written.append(paths.write(tree, key_path(enc.mapper), data, mode=0o400))
        in_initramfs |= enc.initramfs
    if in_initramfs and paths.installed(tree, "/usr/sbin/update-initramfs"):
        with Root(tree) as root:
            text = root.read_text(CONF_HOOK) if root.is_file(CONF_HOOK) else ""
        if CONF_HOOK_LINES not in text:
            written.append(paths.write(tree, CONF_HOOK, text + CONF_HOOK_LINES))
        written.append(paths.write(tree, UMASK_CONF, "# written by imagecomposer: the "
                                   "initramfs holds key files\nUMASK=0077\n"))
    return written

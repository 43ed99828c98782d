"""A content-keyed cache of generated initramfs images (osbuild-style hashed step).

Generating the initramfs is the slowest configuration step (~15 s for Debian's
``linux-image-amd64`` with ``MODULES=most``), and for most configuration changes (a user, a
file, a service) its result is byte-for-byte the same. The key hashes everything
initramfs-tools reads to build it: the installed package set (``var/lib/dpkg/status``), its
configuration and hooks (``etc/initramfs-tools``, ``usr/share/initramfs-tools``), module
options (``etc/modprobe.d``, ``etc/modules``), ``etc/fstab`` and ``etc/crypttab`` (with the
cryptsetup-initramfs settings, the key files it may embed, and ``etc/lvm``), the
kernels' module trees (file names and sizes), and the content of the spec's post-install
scripts (which run just before and could change anything), and the build epoch (the
initrd's file times and compression depend on it). A hit copies the cached images into
``/boot`` (the bytes the cache checked against their sealed digests); a miss builds them and
stores them atomically in the :class:`~imagecomposer.cache.initramfs.InitramfsCache` (which
seals them and keeps them within the limits of ``storage.initramfs_cache``).

Only initramfs-tools images (a dpkg tree) are cached; dracut trees always build.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from imagecomposer.cache.initramfs import InitramfsCache
from imagecomposer.compose import initramfs
from imagecomposer.foundation.epoch import resolve
from imagecomposer.foundation.events import EventSink
from imagecomposer.foundation.rootfs import Root

log = logging.getLogger(__name__)

FORMAT = "v2"  # v2: the build epoch is part of the key
HASHED_TREES = ("etc/initramfs-tools", "usr/share/initramfs-tools", "etc/modprobe.d",
                "etc/cryptsetup-initramfs", "etc/cryptsetup-keys.d", "etc/lvm")
HASHED_FILES = ("var/lib/dpkg/status", "etc/modules", "etc/fstab", "etc/crypttab")


def key(tree: Path, *, root_fstype: str | None, scripts: Iterable[Path] = (),
        epoch: int | None = None) -> str:
    digest = hashlib.sha256(f"{FORMAT}\0{root_fstype}\0{resolve(epoch)}\0".encode())
    for name in HASHED_FILES:
        _file(digest, tree / name, name)
    for name in HASHED_TREES:
        _tree(digest, tree / name, name, content=True)
    for kernel in initramfs.kernels(tree):
        modules = tree / "usr/lib/modules" / kernel.version
        _tree(digest, modules, f"modules/{kernel.version}", content=False)
    for script in scripts:
        _file(digest, script, f"script {script.name}")
    return digest.hexdigest()


def _file(digest: hashlib._Hash, path: Path, label: str) -> None:
    digest.update(label.encode() + b"\0")
    if path.is_file():
        with path.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    else:
        digest.update(b"-")


def _tree(digest: hashlib._Hash, root: Path, label: str, *, content: bool) -> None:
    digest.update(label.encode() + b"\0")
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                digest.update(f"L {rel} {path.readlink()}\0".encode())
            elif content:
                _file(digest, path, f"F {rel} {oct(path.stat().st_mode)}")
            else:
                digest.update(f"S {rel} {path.stat().st_size}\0".encode())


def build(tree: Path, cache: InitramfsCache | None, *, root_fstype: str | None,
          scripts: Iterable[Path] = (), timeout: float | None = None,
          builder: Callable[..., list[initramfs.Kernel]] = initramfs.build,
          epoch: int | None = None, events: EventSink | None = None,
          modules: tuple[str, ...] | None = None) -> list[initramfs.Kernel]:
    """:func:`initramfs.build` through the cache (``cache`` None or disabled: no cache);
    ``events`` receives the builder's progress; ``modules``: the initramfs's kernel modules
    (their hook is under etc/initramfs-tools, so they are part of the key)."""
    epoch = resolve(epoch)
    extra: dict[str, object] = {"events": events} if events is not None else {}
    if modules is not None:
        extra["modules"] = modules
    if cache is None or not cache.enabled or not (tree / "var/lib/dpkg/status").is_file():
        return builder(tree, root_fstype=root_fstype, timeout=timeout, epoch=epoch, **extra)
    initramfs.write_conf(tree, root_fstype, modules)
    digest = key(tree, root_fstype=root_fstype, scripts=scripts, epoch=epoch)
    kernels = initramfs.kernels(tree)
    images = cache.load(digest, [k.initrd.name for k in kernels])  # checked against the seal
    if images is not None:
        with Root(tree) as root:
            for kernel in kernels:
                root.write(kernel.initrd_path, images[kernel.initrd.name], mode=0o644)
        log.info("initramfs restored from the cache (%s)", digest[:12])
        return kernels
    kernels = builder(tree, root_fstype=root_fstype, timeout=timeout, epoch=epoch, **extra)
    with Root(tree) as root:
        built = {k.initrd.name: root.read_bytes(k.initrd_path) for k in kernels}
    cache.store(digest, built, label=", ".join(k.initrd.name for k in kernels))
    return kernels

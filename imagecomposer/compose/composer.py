"""The Composer: installs a Lock into a tree, configures it, and assembles the raw disk.

Stages it runs (each usable alone):

- :meth:`Composer.install` -- packages into an empty tree with the lock's family's tool
  (dpkg in a namespaced chroot, one ``rpm --root`` transaction: :meth:`Family.install
  <imagecomposer.families.family.Family.install>`); with the spec's ``pre_install`` scripts
  (:class:`~imagecomposer.compose.configure.scripts.PreInstall`) in two phases: the family's
  bootstrap set, the scripts on that tree, the rest of the lock;
- :meth:`Composer.installed_tree` -- the same through the installed-tree cache, keyed by the
  lock's hash, the epoch and the pre_install scripts, so a configuration-only change skips
  installation;
- :meth:`Composer.configure` -- the spec's customizations, the image's repositories (APT
  sources or dnf ``.repo`` files), fstab, the initramfs and the bootloader, with the
  family's hooks around them (rpm: kernels and systemd presets first, SELinux last; deb: the
  dm-verity initramfs script); returns one directory tree per partition;
- :meth:`Composer.compose` -- all of it plus layout planning and disk assembly (the disk
  side, :mod:`imagecomposer.compose.disk`).

Work trees are removed at the end unless ``keep_temp``; after a failure (or Ctrl-C) they are
kept when ``keep_on_failure`` (``core.cleanup_on_failure: false``), for inspection.

Same lock, spec and ``epoch``, same bytes: the epoch (``Composer(config, epoch=N)``; default
:func:`imagecomposer.foundation.epoch.build_epoch`, ``SOURCE_DATE_EPOCH`` or a fixed date) is
the only clock of a build. Every tool whose output lands in the image sees it as
``SOURCE_DATE_EPOCH``, the installed-tree and initramfs caches are keyed by it, leftovers
that differ from build to build are removed (:mod:`imagecomposer.foundation.normalize`, with
the family's :attr:`~imagecomposer.families.family.Family.leftovers`), the work trees' file
times are clamped to it before assembly, and the disk side bounds every time in every
filesystem by it (docs/reproducibility.md).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from imagecomposer.cache.initramfs import InitramfsCache
from imagecomposer.cache.trees import TreeCache, copy_tree
from imagecomposer.compose import bootloader, initramfs, initramfs_cache
from imagecomposer.compose.configure import (
    crypttab,
    files,
    fstab,
    network,
    paths,
    scripts,
    services,
    ssh,
    system,
    users,
)
from imagecomposer.compose.configure.scripts import PreInstall
from imagecomposer.compose.disk import assemble, plan_layout, tree_size
from imagecomposer.compose.disk.content import clamp_times
from imagecomposer.compose.disk.luks import embedded_keys, key_sources
from imagecomposer.compose.layout import Layout, PlannedPartition
from imagecomposer.config.model import Config
from imagecomposer.families.family import TreeContext
from imagecomposer.families.registry import family
from imagecomposer.foundation import display, normalize
from imagecomposer.foundation.cleanup import remove_doomed, remove_tree, remove_tree_soon
from imagecomposer.foundation.epoch import resolve
from imagecomposer.foundation.errors import ComposeError, InsufficientDiskSpace
from imagecomposer.foundation.events import (
    ConfigurationStep,
    DiskStep,
    EventSink,
    InstallStep,
    Progress,
)
from imagecomposer.foundation.rootfs import Root
from imagecomposer.lock import Lock
from imagecomposer.spec.model import Disk, Partition, Spec

log = logging.getLogger(__name__)

MIB = 1 << 20
GIB = 1 << 30
# An installed Debian tree is ~4.5x its compressed .debs (340 MB from 77 MB measured).
INSTALLED_FACTOR = 5
PROVISIONAL_CONTENT = GIB  # any size: identifiers do not depend on sizes
DEFAULT_ESP_SIZE = 256 * MIB
BIOS_DIR = "bios-boot"  # next to the root tree: GRUB's MBR code and core.img, if any


@attrs.frozen
class ComposeResult:
    output: Path
    layout: Layout
    roothash: str | None
    cache_hit: bool
    timings: Mapping[str, float]  # seconds per step: install/restore, configure, assemble


def default_disk(spec: Spec) -> Disk:
    """The spec's disk, or an ESP + ext4 root (auto size) when it names no partitions."""
    if spec.disk.partitions:
        return spec.disk
    parts = (Partition(name="esp", type="esp", size=DEFAULT_ESP_SIZE, filesystem="vfat"),
             Partition(name="root", type="root", size=None, filesystem="ext4"))
    return attrs.evolve(spec.disk, partitions=parts)


def layout_seed(spec: Spec, lock: Lock) -> str:
    """What every disk identifier derives from: the lock and the image identity."""
    text = f"{lock.hash}\n{spec.image.name}\n{spec.image.version}\n{spec.disk!r}"
    return hashlib.sha256(text.encode()).hexdigest()


class Composer:
    """Builds image trees and disks for one global configuration."""

    def __init__(self, config: Config, *, keep_temp: bool = False,
                 keep_on_failure: bool | None = None, events: EventSink | None = None,
                 use_cache: bool = True, epoch: int | None = None) -> None:
        self.config = config
        self.keep_temp = keep_temp  # keep the work trees, always
        # keep them when the build fails (None: not core.cleanup_on_failure)
        self.keep_on_failure = keep_temp or (not config.core.cleanup_on_failure
                                             if keep_on_failure is None else keep_on_failure)
        self.use_cache = use_cache  # the initramfs cache (the tree cache has its own switch)
        self.events: EventSink = events or (lambda _event: None)
        self.cache = TreeCache.for_config(config)  # both honour storage.*.enabled
        self.initramfs_cache = InitramfsCache.for_config(config)
        self.epoch = resolve(epoch)  # the build's clock, never the wall clock

    def __repr__(self) -> str:
        return display.call("Composer", tree_cache=self.config.tree_cache_dir,
                            use_cache=self.use_cache, keep_temp=self.keep_temp)

    def tree_key(self, lock: Lock, pre_install: PreInstall | None = None) -> str:
        """The installed-tree cache key: the lock and the epoch (maintainer scripts record
        it, e.g. as the password change date of the accounts they create), and for a spec
        with pre_install scripts, their content, names and environment (the key of a spec
        without is what it always was)."""
        key = f"{lock.hash}-e{self.epoch}"
        return key if pre_install is None else f"{key}-p{pre_install.key}"

    # --- packages ------------------------------------------------------------------------

    def install(self, lock: Lock, packages: Mapping[str, Path], tree: Path, *,
                pre_install: PreInstall | None = None) -> None:
        """Install every package of ``lock`` (files in ``packages``) into the empty ``tree``;
        ``pre_install``: the spec's pre_install scripts, run once the family's bootstrap set
        is installed, before the rest (None: one phase)."""
        self.events(InstallStep(f"installing {len(lock.packages)} {lock.kind} packages"))
        hook = None if pre_install is None else functools.partial(self._pre_install,
                                                                  pre_install)
        family(lock.kind).install(lock, packages, tree, timeout=self.config.core.timeout,
                                  parallel=self.config.core.parallel,
                                  events=self.events, epoch=self.epoch, pre_install=hook)

    def _pre_install(self, pre_install: PreInstall, tree: Path) -> None:
        self.events(InstallStep(f"pre-install scripts ({', '.join(pre_install.names)}) on the "
                                "bootstrap set"))
        pre_install.run(tree, timeout=self.config.core.timeout, epoch=self.epoch)

    def installed_tree(self, lock: Lock, packages: Mapping[str, Path], workdir: Path,
                       *, use_cache: bool = True, pre_install: PreInstall | None = None,
                       read_only: bool = False) -> Path:
        """``workdir/root`` holding the installed ``lock`` (with ``pre_install`` run between
        the bootstrap set and the rest), restored from the tree cache when an earlier build
        installed the same (then ``packages`` is not read). On a failure nothing is left:
        no tree (unless the build keeps its work trees), no cache entry. ``read_only``:
        the caller never writes into the tree (it configures a copy), so the tree cache
        stores it by hard links (:meth:`TreeCache.store`)."""
        tree = workdir / "root"
        if tree.exists():
            remove_tree(tree)
        workdir.mkdir(parents=True, exist_ok=True)
        key = self.tree_key(lock, pre_install)
        if use_cache and self.cache.restore(key, tree):
            self.events(InstallStep(
                f"installed tree restored from the cache ({lock.hash[:12]})"))
            return tree
        try:
            self.install(lock, packages, tree, pre_install=pre_install)
        except BaseException:
            if not self.keep_on_failure:
                remove_tree(tree)
            raise
        if use_cache and self.cache.enabled:
            self.events(InstallStep("storing the installed tree in the cache"))
            self.cache.store(key, tree, link=read_only)
        return tree

    # --- configuration -------------------------------------------------------------------

    def configure(self, spec: Spec, tree: Path, layout: Layout, lock: Lock, *,
                  on_configured: Callable[[Path], None] | None = None) -> dict[str, Path]:
        """Apply the spec to ``tree``; return the partition trees by partition name.

        The root partition's tree is ``tree`` itself; the ESP tree and the trees of other
        mounted partitions (moved out of ``tree``) are siblings ``part-<name>``.
        ``on_configured`` sees the whole configured tree before those partitions are moved
        out (with a ``var`` partition, /var/lib/dpkg leaves the root tree).
        """
        c = spec.customizations
        timeout = self.config.core.timeout
        epoch = self.epoch
        verity_root = c.security.read_only_root and layout.by_type("verity") is not None
        hooks = family(lock.kind)
        ctx = TreeContext(tree, spec, lock, self.config, verity_root=verity_root,
                          events=self.events)
        # first (rpm: kernels under /boot and the distribution's presets), before anything
        # below (network, services, scripts) enables or disables a unit over them
        hooks.after_install(ctx)
        # the spec's pre_install scripts ran at installation (Composer.install)
        # customizations.packages.remove acted at resolution: no removed package is locked
        self.events(ConfigurationStep("configuration: system, users, files, ssh, network, "
                                      "services"))
        if c.hostname:
            system.hostname(tree, c.hostname)
        system.timezone(tree, c.timezone)
        system.locale(tree, c.locale, epoch=epoch)
        if c.keyboard:
            system.keyboard(tree, c.keyboard)
        system.first_boot_identity(tree)
        users.root_password(tree, c.root_password_hash, epoch=epoch)
        for user in c.users:
            users.add_user(tree, user, epoch=epoch)
        files.apply(tree, c.files, source_roots=files.source_roots(
            spec, self.config.core.allowed_paths))
        ssh.configure(tree, c.ssh)
        network.configure(tree, c.network)
        hooks.configure_repositories(ctx)
        services.apply(tree, c.services.enabled, c.services.disabled,
                       already=network.enabled_units(tree))
        fstab.configure(tree, layout, verity_root=verity_root)
        self._stacked_storage(spec, tree, layout)
        self.events(ConfigurationStep("configuration: post-install scripts"))
        scripts.run_scripts(tree, spec, "post-install", c.scripts.post_install, timeout=timeout,
                            epoch=epoch)
        hooks.before_initramfs(ctx)
        self.events(ConfigurationStep("initramfs"))
        # a verity root is never checked (fsck cannot write it): no fsck for it in the initrd
        kernels = initramfs_cache.build(
            tree, self.initramfs_cache if self.use_cache else None,
            root_fstype=None if verity_root else layout.root.filesystem,
            scripts=c.scripts.post_install, timeout=timeout, epoch=epoch,
            events=self.events, modules=initramfs.modules_for(layout))
        trees: dict[str, Path] = {layout.root.name: tree}
        esp = layout.esp
        bios_dir = tree.parent / BIOS_DIR
        if bios_dir.exists():
            remove_tree(bios_dir)
        if esp is None and c.bootloader == "grub" and layout.table == "mbr":
            self.events(ConfigurationStep("bootloader: grub (BIOS)"))
            bootloader.grub_bios(tree, spec, layout, kernels, out=bios_dir)
        elif esp is not None:
            esp_tree = tree.parent / f"part-{esp.name}"
            if esp_tree.exists():
                remove_tree(esp_tree)
            esp_tree.mkdir()
            self.events(ConfigurationStep(f"bootloader: {c.bootloader}"))
            bootloader.install(tree, esp_tree, spec, layout, kernels, epoch=epoch)
            trees[esp.name] = esp_tree
        elif c.bootloader != "none":
            raise ComposeError(f"bootloader {c.bootloader} needs an ESP partition (type: esp)")
        normalize.remove_leftovers(tree, hooks.leftovers)
        if on_configured is not None:
            on_configured(tree)
        # last: the family's finish labels every file written so far (SELinux)
        hooks.finish(ctx)
        trees.update(split_partitions(tree, layout))
        return trees

    def _stacked_storage(self, spec: Spec, tree: Path, layout: Layout) -> None:
        """What boots an LVM or LUKS2 layout: lvm2 must be in the image (its initramfs hook
        and udev rules activate the volume groups), crypttab and embedded keys."""
        if any(True for _ in layout.logical_volumes()) and \
                not paths.installed(tree, "/sbin/lvm", "/usr/sbin/lvm"):
            raise ComposeError("the disk layout has an LVM volume group but the image has no "
                               "lvm: add the package lvm2")
        mappers = {v.name: v.encryption.mapper for v in layout.encrypted()
                   if v.encryption is not None}
        if mappers:
            self.events(ConfigurationStep("configuration: crypttab for LUKS2 volumes"))
            crypttab.configure(tree, layout, embedded_keys(default_disk(spec), mappers))

    # --- everything ----------------------------------------------------------------------

    def compose(self, spec: Spec, lock: Lock, packages: Mapping[str, Path], workdir: Path,
                output: Path, *, installed: Path | None = None, use_tree_cache: bool = True,
                on_configured: Callable[[Path], None] | None = None) -> ComposeResult:
        """Install (or restore), configure and assemble ``output``, a raw disk image.

        ``installed``: a tree that already holds the installed lock (the pipeline's compose
        stage output, the spec's pre_install scripts run); it is copied, never changed.
        ``on_configured`` sees the configured root tree before the disk is assembled (the
        pipeline takes the SBOM data there).
        """

        timings: dict[str, float] = {}
        workdir.mkdir(parents=True, exist_ok=True)
        remove_doomed(workdir)  # a killed build's trees that were being deleted
        check_free_space(workdir, lock, spec)
        disk = default_disk(spec)
        seed = layout_seed(spec, lock)
        arch = spec.image.base.arch
        done = False
        try:
            start = time.monotonic()
            if installed is not None:
                hit = True
                tree = workdir / "root"
                if tree.exists():
                    remove_tree(tree)
                copy_tree(installed, tree)
            else:
                pre_install = PreInstall.of(spec)
                hit = use_tree_cache and self.cache.lookup(
                    self.tree_key(lock, pre_install)) is not None
                tree = self.installed_tree(lock, packages, workdir, use_cache=use_tree_cache,
                                           pre_install=pre_install)
            timings["restore" if hit else "install"] = time.monotonic() - start
            start = time.monotonic()
            names = volume_names(disk)
            provisional = plan_layout(
                disk, seed=seed, arch=arch,
                content_sizes={name: PROVISIONAL_CONTENT for name in names})
            trees = self.configure(spec, tree, provisional, lock, on_configured=on_configured)
            timings["configure"] = time.monotonic() - start
            sizes = {name: tree_size(trees[name]) if name in trees else 0 for name in names}
            layout = plan_layout(disk, seed=seed, arch=arch, content_sizes=sizes)
            _same_identifiers(provisional, layout)
            esp_tree = trees.get(layout.esp.name) if layout.esp is not None else None

            def on_verity(info: object) -> None:
                roothash = str(getattr(info, "roothash"))  # noqa: B009
                if esp_tree is not None:
                    bootloader.rewrite_entries(
                        esp_tree, bootloader.kernel_cmdline(spec, layout, roothash=roothash))

            start = time.monotonic()
            for part_tree in trees.values():  # our own work trees: bounded by the epoch
                clamp_times(part_tree, self.epoch)
            self.events(DiskStep(f"assembling {output.name}"))
            steps = DiskSteps(self.events, 1 + sum(1 for _ in layout.volumes()))
            result = assemble(layout, trees, output, workdir=workdir / "disk",
                              events=steps, on_verity=on_verity, keys=key_sources(disk),
                              epoch=self.epoch, parallel=self.config.core.parallel,
                              content_sizes=sizes)
            steps.finished()
            bios = bootloader.read_bios_boot(workdir / BIOS_DIR)
            if bios is not None:
                self.events(DiskStep("writing GRUB into the MBR and the gap after it"))
                try:
                    bootloader.write_bios_boot(result.output, bios)
                except BaseException:
                    result.output.unlink(missing_ok=True)  # never a half-bootable output
                    raise
            timings["assemble"] = time.monotonic() - start
            done = True
        finally:
            if not (self.keep_temp or (not done and self.keep_on_failure)):
                # after success the files go while the build goes on (finalize)
                remove = remove_tree_soon if done else remove_tree
                for child in ("root", "disk", BIOS_DIR,
                              *(f"part-{name}" for name in volume_names(disk))):
                    remove(workdir / child)
        return ComposeResult(output=result.output, layout=result.layout,
                             roothash=result.roothash, cache_hit=hit, timings=timings)


class DiskSteps:
    """The disk assembly's steps (the partition table, then each volume) as
    :class:`DiskStep` events and one :class:`Progress` ("assembling the disk", in steps):
    a step starting means the ones before it are done; :meth:`finished` completes it."""

    WHAT = "assembling the disk"

    def __init__(self, events: EventSink, total: int) -> None:
        self.events = events
        self.total = total
        self.done = 0

    def __call__(self, what: str) -> None:
        self.events(DiskStep(what))
        self.events(Progress(self.WHAT, min(self.done, self.total - 1), self.total, "steps"))
        self.done += 1

    def finished(self) -> None:
        self.events(Progress(self.WHAT, self.total, self.total, "steps"))


def split_partitions(tree: Path, layout: Layout) -> dict[str, Path]:
    """Move the content of each separately mounted partition (/home, /var ...) out of the
    root tree into ``part-<name>``, deepest mount point first, leaving empty mount points
    (same owner, mode, times and extended attributes: an SELinux label). Mount points
    resolve inside the tree; one that is itself a symlink is refused (the partition would be
    mounted wherever it points)."""
    moved: dict[str, Path] = {}
    parts = [p for p in layout.volumes()
             if p.mountpoint not in (None, "/") and p is not layout.esp
             and p.filesystem not in ("none", "swap")]
    with Root(tree) as root:
        for part in sorted(parts, key=lambda p: -len(str(p.mountpoint))):
            mount = part.mountpoint
            assert mount is not None
            if root.is_symlink(mount):
                raise ComposeError(f"mount point {mount} of partition {part.name} is a symlink "
                                   f"in the image ({mount} -> {root.readlink(mount)})")
            dest = tree.parent / f"part-{part.name}"
            if dest.exists():
                remove_tree(dest)
            if root.is_dir(mount):
                st = root.lstat(mount)
                labels = root.xattrs(mount)
                root.move_out(mount, dest)
                root.mkdir(mount, st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid,
                           follow=False)
                root.set_xattrs(mount, labels)
                root.set_times(mount, (st.st_atime_ns, st.st_mtime_ns))
            else:
                dest.mkdir()
                root.mkdir(mount)
            moved[part.name] = dest
    return moved


def check_free_space(workdir: Path, lock: Lock, spec: Spec) -> None:
    """Refuse early when ``workdir`` cannot hold the tree and the staged filesystems."""
    packed = sum(p.size for p in lock.packages)
    need = packed * INSTALLED_FACTOR * 2 + (spec.disk.size or 0) // 4 + 256 * MIB
    have = shutil.disk_usage(workdir).free
    if need > have:
        raise InsufficientDiskSpace(
            f"Insufficient disk space: need {need / MIB:.0f} MiB, have {have / MIB:.0f} MiB "
            f"in {workdir}")


def volume_names(disk: Disk) -> list[str]:
    """Partition and logical volume names: what partition trees are keyed by."""
    names = []
    for part in disk.partitions:
        names.append(part.name)
        if part.volume_group is not None:
            names += [lv.name for lv in part.volume_group.logical_volumes]
    return names


def _identifiers(layout: Layout) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for volume in layout.volumes():
        ids: tuple[str, ...] = (volume.fsuuid,
                                volume.encryption.uuid if volume.encryption else "")
        if isinstance(volume, PlannedPartition):
            ids += (volume.partuuid,)
        found[volume.name] = ids
    return found


def _same_identifiers(provisional: Layout, final: Layout) -> None:
    before = _identifiers(provisional)
    after = _identifiers(final)
    if before != after:
        raise ComposeError("internal error: partition identifiers changed between the "
                           "provisional and the final layout")

"""The Debian family (Debian, Ubuntu): apt repositories, dpkg, initramfs-tools.

- **remove:** the named packages (names, ``name OP version``, globs) are locked out at
  resolution (:meth:`DebProvider.remove_jobs`, SOLVER_LOCK jobs; the apt model never
  chooses them), so a removed package is never in a lock, never installed, and nothing is
  purged afterwards. A lock given with ``build --locked`` is checked with the same jobs
  (:meth:`DebFamily.removed`).
- **install:** the Essential set extracted, then one ``dpkg --unpack`` and one
  ``dpkg --configure -a`` in the sandbox (:mod:`.install`). With ``pre_install`` scripts,
  two rounds: the bootstrap set (Essential, Priority: required and their dependencies:
  debootstrap's ``minbase``, a shell, dpkg, debconf, passwd, apt), the scripts, the rest.
- **the image's repositories:** deb822 ``.sources`` files from the lock, with keyrings
  (:mod:`.image_sources`).
- **before the initramfs:** initramfs-tools ignores systemd's verity words, so a dm-verity
  root gets our hook and ``local-top`` script (:mod:`.verity_initrd`).
- **finish:** with ``security.selinux`` permissive or enforcing, the mode in
  ``/etc/selinux/config`` and every file labelled at build time
  (:mod:`imagecomposer.families.selinux`; the profile's ``selinux`` packages are requested).
- **database and SBOM:** ``/var/lib/dpkg/status`` (:mod:`.pkgdb`), ``pkg:deb`` URLs, licenses
  from the DEP-5 copyright files (:mod:`.copyright`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from imagecomposer.config.model import Config, ProviderConfig
from imagecomposer.families import checks, libsolv, selinux
from imagecomposer.families.base import Provider
from imagecomposer.families.deb import image_sources, install, verity_initrd
from imagecomposer.families.deb import request as requests
from imagecomposer.families.deb.copyright import package_license
from imagecomposer.families.deb.pkgdb import DPKG_STATUS, dpkg_installed
from imagecomposer.families.deb.provider import DebProvider, base_mirror
from imagecomposer.families.family import Family, InstalledPackage, TreeContext, purl_part
from imagecomposer.families.licenses import PackageLicense
from imagecomposer.families.profile import available, load_profile
from imagecomposer.families.request import PackageRequest
from imagecomposer.foundation.errors import (
    ConfigError,
    PackageNotFound,
    Problem,
    ProviderNotConfigured,
)
from imagecomposer.foundation.events import ConfigurationStep, EventSink
from imagecomposer.lock import Lock, LockedPackage
from imagecomposer.spec.model import Spec


class DebFamily(Family):
    kind = "deb"
    package_extension = "deb"
    manager = "dpkg"
    database = "dpkg status"
    database_paths = (DPKG_STATUS,)
    leftovers = install.LEFTOVERS

    def check(self, spec: Spec, config: Config) -> list[Problem]:
        """The OS profile exists and knows the arch, base type and kernel package; the
        keyring exists; a mirror is configured or the host's apt sources serve the suites;
        every remote repository has a key or ``trusted: true``; SELinux has packages."""
        base, where = spec.image.base, spec.source_map
        found = checks.repositories(spec, local_needs_key=False)
        try:
            profile = load_profile(base.os, base.version)
        except ProviderNotConfigured as exc:
            return [where.problem(("image", "base", "version"), str(exc)), *found]
        what = f"{base.os} {base.version}"
        settings = config.providers.get(base.os, ProviderConfig())
        found += checks.profile_choices(
            spec, what=what, architectures=profile.architectures,
            base_types=profile.package_sets, kernels=profile.kernels,
            default_kernel=profile.kernel)
        found += checks.keyring(spec, settings.keyring or profile.keyring,
                                setting=f"providers.{base.os}.keyring",
                                configured=settings.keyring is not None,
                                hint=f"install the keyring package of {base.os}")
        for role in dict.fromkeys(r.mirror for r in profile.repositories):
            try:
                base_mirror(base.os, profile, settings, role)
            except ConfigError as exc:
                found.append(where.problem(("image", "base", "os"), str(exc)))
        if spec.customizations.security.selinux != "disabled" and not profile.selinux:
            found += checks.selinux_packages(
                spec, profile.selinux, what=what,
                supported={f"{o} {v}": bool(load_profile(o, v).selinux)
                           for o, v in available()})
        return found

    def provider(self, request: PackageRequest, config: Config, *,
                 cache_dir: Path | None = None,
                 events: Callable[[Any], None] | None = None) -> Provider:
        return DebProvider(request, config, cache_dir=cache_dir, events=events)

    def new_pool(self, arch: str) -> Any:
        solv = libsolv.solv()
        pool = solv.Pool()
        if pool.setdisttype(solv.Pool.DISTTYPE_DEB) < 0:
            raise RuntimeError("libsolv was built without deb support")
        pool.setarch(arch)
        return pool

    def removed(self, lock: Lock, remove: Sequence[str]) -> dict[str, str]:
        """The lock's packages the SOLVER_LOCK jobs of ``remove`` select (a pool made of the
        lock's packages: names, versions, globs; virtual names are not in a lock)."""
        if not remove:
            return {}
        solv = libsolv.solv()
        pool = self.new_pool(lock.arch)
        repo = pool.add_repo("lock")
        for package in lock.packages:
            solvable = repo.add_solvable()
            solvable.name, solvable.evr, solvable.arch = (package.name, package.version,
                                                          package.arch)
            solvable.add_deparray(solv.SOLVABLE_PROVIDES, pool.rel2id(
                pool.str2id(package.name), pool.str2id(package.version), solv.REL_EQ))
        repo.internalize()
        pool.createwhatprovides()
        found: dict[str, str] = {}
        for text in remove:
            try:
                jobs = requests.jobs_for(pool, text, solv.Job.SOLVER_LOCK)
            except PackageNotFound:
                continue
            for job in jobs:
                for solvable in job.solvables():
                    found.setdefault(solvable.name, text)
        return found

    def install(self, lock: Lock, packages: Mapping[str, Path], tree: Path, *,
                timeout: float | None = None, events: EventSink | None = None,
                parallel: int = 1, epoch: int | None = None,
                pre_install: Callable[[Path], None] | None = None) -> None:
        install.install(lock, packages, tree, timeout=timeout, events=events,
                        parallel=parallel, epoch=epoch, pre_install=pre_install)

    def bootstrap(self, lock: Lock, packages: Mapping[str, Path]) -> tuple[LockedPackage, ...]:
        """Essential: yes, Priority: required and their dependencies
        (:func:`.install.essential_set`): debootstrap's and mmdebstrap's ``minbase`` -- a
        POSIX shell (dash, bash), coreutils, dpkg (``dpkg-divert``, path excludes in
        ``/etc/dpkg/dpkg.cfg.d`` that the rest then honours), debconf
        (``debconf-set-selections``), passwd (``useradd``), apt."""
        return tuple(install.essential_set(lock))

    def configure_repositories(self, ctx: TreeContext) -> list[Path]:
        return image_sources.configure(
            ctx.tree, ctx.lock, image_sources.repository_keys(ctx.spec, ctx.lock, ctx.config))

    def before_initramfs(self, ctx: TreeContext) -> None:
        if ctx.verity_root:
            # initramfs-tools ignores systemd's verity words: our script opens the root
            ctx.events(ConfigurationStep("initramfs: dm-verity root script"))
            verity_initrd.install(ctx.tree)

    def finish(self, ctx: TreeContext) -> None:
        """The SELinux mode and the tree's labels (:mod:`imagecomposer.families.selinux`);
        the profile's ``selinux`` packages (selinux-basics, selinux-policy-default) are in
        the lock when the mode is not disabled."""
        mode = ctx.spec.customizations.security.selinux
        if mode != "disabled":
            ctx.events(ConfigurationStep(f"SELinux {mode}: labelling the tree"))
        selinux.configure(ctx.tree, mode, default_policy="default",
                          packages="selinux-basics and selinux-policy-default",
                          timeout=ctx.timeout, parallel=ctx.config.core.parallel)

    def installed_packages(self, tree: Path) -> dict[str, InstalledPackage]:
        return dpkg_installed(tree)

    def purl(self, lock: Lock, package: LockedPackage) -> str:
        """``pkg:deb/debian/bash@5.2.15-2%2Bb7?arch=amd64&distro=debian-12``."""
        namespace = purl_part(lock.os.lower())
        distro = purl_part(f"{lock.os.lower()}-{lock.version}")
        return (f"pkg:deb/{namespace}/{purl_part(package.name)}@{purl_part(package.version)}"
                f"?arch={purl_part(package.arch)}&distro={distro}")

    def license(self, tree: Path, package: LockedPackage,
                installed: InstalledPackage) -> PackageLicense:
        """From ``/usr/share/doc/<name>/copyright`` (DEP-5), read inside the tree."""
        return package_license(tree, package.name)

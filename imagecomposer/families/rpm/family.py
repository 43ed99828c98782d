"""The RPM family (Fedora, Enterprise Linux 9 rebuilds, Azure Linux): rpm-md, rpm, dnf.

- **remove:** patterns are dnf excludes: matching packages leave the pool's considered set
  at resolution (:mod:`.jobs`), so they are never in a lock; a lock given with ``build
  --locked`` is checked with the same patterns (:meth:`RpmFamily.removed`).
- **install:** one ``rpm --root`` transaction into the database location the lock's OS
  profile names (:mod:`.install`); with ``pre_install`` scripts, two: the bootstrap set
  (filesystem, setup, basesystem, the ``/bin/sh`` provider and their dependencies), the
  scripts, the rest.
- **after install:** kernels exposed under ``/boot`` and the distribution's systemd presets
  applied, before any configuration step enables or disables a unit (the network step
  enables systemd-networkd; ``preset-all`` would disable it again) (:mod:`.configure`).
- **the image's repositories:** ``/etc/yum.repos.d`` files from the provider and the
  configured keys imported into the image's rpm database (:mod:`.repos`). The keys come from
  the spec and the global configuration, not the lock, so they are imported here, in the
  configuration stage, never into the installed tree the cache shares between specs.
- **finish:** the SELinux mode and the tree's labels, after every file is written
  (:mod:`imagecomposer.families.selinux`, shared with the Debian family).
- **database and SBOM:** ``rpm -qa`` on the image's database (:mod:`.pkgdb`), ``pkg:rpm``
  URLs with the epoch as a qualifier, licenses from the License tag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from imagecomposer.config.model import Config, ProviderConfig
from imagecomposer.families import checks
from imagecomposer.families.base import Provider
from imagecomposer.families.family import Family, InstalledPackage, TreeContext, purl_part
from imagecomposer.families.licenses import PackageLicense, spdx_or_ref
from imagecomposer.families.request import PackageRequest
from imagecomposer.families.rpm import jobs
from imagecomposer.families.rpm.configure import apply_presets, configure_selinux, expose_kernels
from imagecomposer.families.rpm.install import (
    DBPATHS,
    bootstrap_set,
    find_rpmdb,
    install_in_phases,
    install_rpms,
    rpm_command,
    rpmdb_location,
)
from imagecomposer.families.rpm.pkgdb import rpm_installed
from imagecomposer.families.rpm.profile import load_rpm_profile, profile_path, rpm_profiles
from imagecomposer.families.rpm.provider import RpmProvider, dnf_priority
from imagecomposer.families.rpm.repos import write_repo_files
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import ComposeError, ConfigError, Problem
from imagecomposer.foundation.events import ConfigurationStep, EventSink
from imagecomposer.lock import Lock, LockedPackage
from imagecomposer.spec.model import Spec


class RpmFamily(Family):
    kind = "rpm"
    package_extension = "rpm"
    manager = "rpm"
    database = "rpmdb"
    database_paths = DBPATHS
    # dnf's logs (the wall-clock time of every action), should a scriptlet or a
    # configuration step run dnf in the image
    leftovers = ("/var/log/dnf.log", "/var/log/dnf.librepo.log", "/var/log/dnf.rpm.log",
                 "/var/log/hawkey.log")

    def check(self, spec: Spec, config: Config) -> list[Problem]:
        """A shipped profile, or the spec's repositories for an OS without one; the profile
        knows the arch, base type and kernel package; a mirror and keyring for its
        repositories (the keyring exists); every spec repository has a key or
        ``trusted: true`` and a dnf priority; SELinux has packages in the profile."""
        base, where = spec.image.base, spec.source_map
        found = checks.repositories(spec, local_needs_key=True)
        for i, repo in enumerate(spec.repositories):
            try:
                dnf_priority(repo)
            except ConfigError as exc:
                found.append(where.problem(("repositories", i, "priority"), str(exc)))
        what = f"{base.os} {base.version}"
        if not profile_path(base.os, base.version).is_file():
            own = [r for r in spec.repositories if r.kind in (None, "rpm")]
            if not own:
                shipped = ", ".join(f"{o} {v}" for o, v in rpm_profiles()) or "none"
                found.append(where.problem(
                    ("image", "base", "version"),
                    f"No RPM OS profile for {what} (profiles shipped: {shipped}), and the "
                    "spec names no repositories: an OS without a profile takes every "
                    "package from the spec's repositories"))
            return found
        profile = load_rpm_profile(base.os, base.version)
        found += checks.profile_choices(
            spec, what=what, architectures=profile.architectures,
            base_types=profile.package_sets, kernels=profile.kernels,
            default_kernel=profile.kernel)
        if spec.customizations.security.selinux != "disabled" and not profile.selinux:
            found += checks.selinux_packages(
                spec, profile.selinux, what=what,
                supported={f"{o} {v}": bool(load_rpm_profile(o, v).selinux)
                           for o, v in rpm_profiles()})
        settings = config.providers.get(base.os, ProviderConfig(kind="rpm", mirror=None))
        repos = [r for r in profile.repositories if r.enabled]
        if repos and settings.mirror in (None, "auto"):
            found.append(where.problem(
                ("image", "base", "os"),
                f"providers.{base.os}.mirror is not set: rpm mirrors are never guessed; set "
                f"it in the global configuration to the mirror URL the paths of "
                f"{profile_path(base.os, base.version).name} are relative to"))
        keyring = settings.keyring or profile.keyring
        if repos and keyring is None and any(r.gpgcheck or r.repo_gpgcheck for r in repos):
            found.append(where.problem(("image", "base", "os"),
                                       f"{what}: its repositories are signed: set "
                                       f"providers.{base.os}.keyring"))
        if repos:
            found += checks.keyring(spec, keyring, setting=f"providers.{base.os}.keyring",
                                    configured=settings.keyring is not None,
                                    hint=f"install the release keys of {base.os}")
        return found

    def provider(self, request: PackageRequest, config: Config, *,
                 cache_dir: Path | None = None,
                 events: Callable[[Any], None] | None = None) -> Provider:
        return RpmProvider(request, config, cache_dir=cache_dir, events=events)

    def new_pool(self, arch: str) -> Any:
        return jobs.new_pool(arch)

    def removed(self, lock: Lock, remove: Sequence[str]) -> dict[str, str]:
        """The lock's packages whose name a ``remove:`` pattern excludes (dnf's rule)."""
        found: dict[str, str] = {}
        for package in lock.packages:
            pattern = jobs.excluded(package.name, remove)
            if pattern is not None:
                found[package.name] = pattern
        return found

    def install(self, lock: Lock, packages: Mapping[str, Path], tree: Path, *,
                timeout: float | None = None, events: EventSink | None = None,
                parallel: int = 1, epoch: int | None = None,
                pre_install: Callable[[Path], None] | None = None) -> None:
        dbpath, backend = rpmdb_location(lock)
        if pre_install is not None:
            install_in_phases(lock, packages, tree, pre_install, dbpath=dbpath,
                              db_backend=backend, timeout=timeout, events=events, epoch=epoch)
            return
        install_rpms(lock, packages, tree, dbpath=dbpath, db_backend=backend,
                     timeout=timeout, events=events, epoch=epoch)

    def bootstrap(self, lock: Lock, packages: Mapping[str, Path]) -> tuple[LockedPackage, ...]:
        """filesystem, setup, basesystem and the package that provides ``/bin/sh`` (read
        from the package files), with their dependencies (:func:`.install.bootstrap_set`)."""
        return bootstrap_set(lock, packages)

    def after_install(self, ctx: TreeContext) -> None:
        """Kernels at ``/boot/vmlinuz-V`` and the distribution's systemd presets
        (``preset-all`` enables *and disables*), so that the network step and the spec's
        services are applied over them."""
        expose_kernels(ctx.tree)
        apply_presets(ctx.tree, timeout=ctx.timeout)

    def configure_repositories(self, ctx: TreeContext) -> list[Path]:
        """``.repo`` files and keys written (:func:`~.repos.write_repo_files`), and the
        configured keys imported into the image's rpm database (``gpg-pubkey-*``) so that
        its own rpm and dnf trust what the build trusted. Returns the ``.repo`` files."""
        provider = RpmProvider(self.request(ctx.spec), ctx.config)
        found = find_rpmdb(ctx.tree)
        if found is None:
            raise ComposeError(f"no rpm database in {ctx.tree}: the tree was not installed "
                               "by rpm")
        rpm = rpm_command(ctx.tree, *found)
        for key in provider.trusted_keys():
            runner.run([*rpm, "--import", str(key)], timeout=ctx.timeout,
                       what=f"rpm --import {key}")
        return write_repo_files(ctx.tree, provider)

    def finish(self, ctx: TreeContext) -> None:
        """The SELinux mode and the tree's labels (:mod:`imagecomposer.families.selinux`)."""
        mode = ctx.spec.customizations.security.selinux
        if mode != "disabled":
            ctx.events(ConfigurationStep(f"SELinux {mode}: labelling the tree"))
        configure_selinux(ctx.tree, mode, timeout=ctx.timeout,
                          parallel=ctx.config.core.parallel)

    def installed_packages(self, tree: Path) -> dict[str, InstalledPackage]:
        return rpm_installed(tree)

    def purl(self, lock: Lock, package: LockedPackage) -> str:
        """``pkg:rpm/fedora/bash@5.2.26-3.fc40?arch=x86_64&distro=fedora-40&epoch=1``."""
        namespace = purl_part(lock.os.lower())
        distro = purl_part(f"{lock.os.lower()}-{lock.version}")
        epoch, sep, rest = package.version.partition(":")
        qualifiers = f"arch={purl_part(package.arch)}&distro={distro}"
        version = package.version
        if sep:
            version, qualifiers = rest, f"{qualifiers}&epoch={epoch}"
        return f"pkg:rpm/{namespace}/{purl_part(package.name)}@{purl_part(version)}?{qualifiers}"

    def license(self, tree: Path, package: LockedPackage,
                installed: InstalledPackage) -> PackageLicense:
        """The installed package's License tag (SPDX on current Fedora)."""
        return spdx_or_ref(installed.license or "")

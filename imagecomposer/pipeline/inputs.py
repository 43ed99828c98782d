"""Each stage's inputs as ONE typed value, built by a function of the spec, the global
configuration, the build options and the fingerprints of the stages it consumes.

A stage's key is the fingerprint of its value (:mod:`imagecomposer.foundation.fingerprint`),
and the stage's ``run()`` receives the value and reads nothing else of the spec or the
configuration: what is not in the value cannot change the result, and everything that is
in it reruns the stage when it changes. Paths in a value stand for their content (a changed
script reruns the stage that runs it); secrets count through a slow salted hash only.

What is *not* an input is operational: where caches and workspaces live, credentials,
parallelism, timeouts, whether a cache may be used. Those change how a stage works, never
what it makes, and the stages take them from the build context.

The stages that need a whole :class:`Spec` (the composer's configuration) get one rebuilt
from the sections of their value (:meth:`ConfigurationInput.spec`), so a spec field outside
the value reads as its default there.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from imagecomposer import __version__
from imagecomposer.compose.configure.scripts import PreInstall
from imagecomposer.config.model import Config, Core, ProviderConfig
from imagecomposer.families.registry import family_for
from imagecomposer.families.request import PackageRequest
from imagecomposer.foundation.digest import sha256_file
from imagecomposer.foundation.fingerprint import BY_NAME, OPTIONAL
from imagecomposer.spec.model import (
    Build,
    Customizations,
    Disk,
    Image,
    Output,
    Repository,
    SbomFormat,
    Sign,
    Spec,
)


@attrs.frozen
class ValidateInput:
    """The whole spec (referenced files by content) and the configuration it is checked
    against: the configured providers and the host paths specs may read."""

    spec: Spec
    providers: Mapping[str, ProviderConfig]
    allowed_paths: tuple[Path, ...] = attrs.field(default=(), metadata=BY_NAME)

    def config(self) -> Config:
        return Config(core=Core(allowed_paths=self.allowed_paths),
                      providers=dict(self.providers))


@attrs.frozen
class PackagesInput:
    """The package request, the settings of its provider (mirror, keyring content) and,
    with ``--locked``, the content of the lock to install."""

    request: PackageRequest
    provider: ProviderConfig | None
    locked: Path | None = None

    def config(self, operational: Config) -> Config:
        """``operational`` with the hashed provider settings as its only provider."""
        providers = {self.request.os: self.provider} if self.provider is not None else {}
        return attrs.evolve(operational, providers=providers)


@attrs.frozen
class ComposeInput:
    """The lock's hash, the build epoch (maintainer scripts see it) and the spec's
    pre_install scripts (they run between the bootstrap set and the rest of the lock): the
    installed tree depends on nothing else. Without pre_install scripts the value's
    fingerprint is what it was before they ran here."""

    lock: str
    epoch: int
    pre_install: PreInstall | None = attrs.field(default=None, metadata=OPTIONAL)


@attrs.frozen
class ConfigurationInput:
    """What the composer reads to configure the installed tree and assemble the disk.

    ``directory`` and the allowed paths decide which host files the spec may copy in; they
    are checked (and hashed) by the validate stage, not part of this stage's identity.
    """

    lock: str
    epoch: int  # every time in the image comes from it
    image: Image
    customizations: Customizations
    repositories: tuple[Repository, ...]
    disk: Disk
    sbom: tuple[SbomFormat, ...]
    provider: ProviderConfig | None
    upstream: Mapping[str, str]
    directory: Path = attrs.field(eq=False)
    allowed_paths: tuple[Path, ...] = attrs.field(default=(), eq=False)
    host_allowed_paths: tuple[Path, ...] = attrs.field(default=(), eq=False)

    def spec(self) -> Spec:
        """A spec holding exactly these sections (every other field at its default)."""
        return Spec(image=self.image, customizations=self.customizations,
                    repositories=self.repositories, disk=self.disk,
                    output=Output(sbom=self.sbom), build=Build(allowed_paths=self.allowed_paths),
                    base_dir=self.directory)

    def config(self, operational: Config) -> Config:
        """``operational`` with the hashed provider settings and the host paths."""
        os_name = self.image.base.os
        return attrs.evolve(
            operational,
            providers={os_name: self.provider} if self.provider is not None else {},
            core=attrs.evolve(operational.core, allowed_paths=self.host_allowed_paths))


@attrs.frozen
class SignInput:
    """``output.sign``: the key (slowly hashed), certificate and algorithm."""

    sign: Sign | None
    upstream: Mapping[str, str]


@attrs.frozen
class FinalizeInput:
    """The whole spec (the manifest embeds it, redacted), the lock, the tool version, the
    build epoch with its source (the manifest records both; vhd headers and the SBOMs hold
    the epoch) and the provider settings (the signed provenance records them)."""

    spec: Spec
    lock: str
    tool_version: str
    upstream: Mapping[str, str]
    epoch: int
    epoch_source: str
    provider: ProviderConfig | None = None


def validate_input(spec: Spec, config: Config) -> ValidateInput:
    return ValidateInput(spec, dict(config.providers), config.core.allowed_paths)


def packages_input(spec: Spec, config: Config, locked: Path | None = None) -> PackagesInput:
    request = family_for(spec.image.base.os, config).request(spec)
    return PackagesInput(request, config.providers.get(request.os), locked)


def compose_input(lock_hash: str, *, epoch: int, spec: Spec | None = None) -> ComposeInput:
    return ComposeInput(lock_hash, epoch, PreInstall.of(spec) if spec is not None else None)


def configuration_input(spec: Spec, config: Config, lock_hash: str,
                        upstream: Mapping[str, str], *, epoch: int) -> ConfigurationInput:
    return ConfigurationInput(
        lock=lock_hash, epoch=epoch, image=spec.image, customizations=spec.customizations,
        repositories=spec.repositories, disk=spec.disk, sbom=spec.output.sbom,
        provider=config.providers.get(spec.image.base.os), upstream=dict(upstream),
        directory=spec.directory, allowed_paths=spec.build.allowed_paths,
        host_allowed_paths=config.core.allowed_paths)


def sign_input(spec: Spec, upstream: Mapping[str, str]) -> SignInput:
    return SignInput(spec.output.sign, dict(upstream))


def finalize_input(spec: Spec, lock_hash: str, upstream: Mapping[str, str], *,
                   epoch: tuple[int, str], config: Config | None = None) -> FinalizeInput:
    provider = config.providers.get(spec.image.base.os) if config is not None else None
    return FinalizeInput(spec, lock_hash, __version__, dict(upstream), *epoch, provider)


def provenance_configuration(provider: ProviderConfig | None) -> dict[str, Any]:
    """What of the global configuration the provenance records: the provider of the image's
    OS as configured (``mirror: auto`` stays ``auto``: the packages' URLs say where they came
    from), its keyring by content, not path (the same on every machine)."""
    if provider is None:
        return {}
    keyring = provider.keyring
    return {"provider": {
        "kind": provider.kind, "mirror": provider.mirror,
        "security_mirror": provider.security_mirror,
        "check_valid_until": provider.check_valid_until,
        "keyring": ({"sha256": sha256_file(keyring)} if keyring is not None and keyring.is_file()
                    else None)}}

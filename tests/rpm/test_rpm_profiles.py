"""RPM OS profiles as data, and how the provider turns them plus config into repositories."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imagecomposer.config.model import Config, Core, ProviderConfig
from imagecomposer.families.rpm import RpmProvider, load_rpm_profile, rpm_profiles
from imagecomposer.families.rpm.profile import PROFILE_DIR, parse_rpm_profile
from imagecomposer.foundation.errors import ConfigError, ProviderNotConfigured
from imagecomposer.spec.model import Base, Customizations, Image, Kernel, Repository, Spec

SHIPPED = {("azurelinux", "3.0"), ("fedora", "42"), ("fedora", "43"), ("rocky", "9"),
           ("almalinux", "9")}


def spec(os_name: str, version: str, *, base_type: str = "minimal",
         **kwargs: object) -> Spec:
    return Spec(image=Image(name="t", base=Base(os=os_name, version=version,
                                                type=base_type)),  # type: ignore[arg-type]
                **kwargs)  # type: ignore[arg-type]


def config(tmp_path: Path, os_name: str, **settings: object) -> Config:
    return Config(core=Core(cache_dir=tmp_path),
                  providers={os_name: ProviderConfig(kind="rpm", **settings)})  # type: ignore[arg-type]


def test_shipped_profiles_load() -> None:
    assert set(rpm_profiles()) >= SHIPPED
    for os_name, version in SHIPPED:
        profile = load_rpm_profile(os_name, version)
        assert profile.kind == "rpm" and profile.repositories and profile.kernel
        assert set(profile.package_sets) == {"minimal", "server", "development"}
        for repo in profile.repositories:
            assert "$basearch" in repo.path and "://" not in repo.path


def test_profiles_name_no_host() -> None:
    for path in PROFILE_DIR.glob("*.yml"):
        text = path.read_text()
        assert "://" not in text, path
        assert not re.search(r"\b[a-z0-9-]+\.(org|com|net|io)\b", text), path


def test_mirror_from_config_and_variables(tmp_path: Path) -> None:
    provider = RpmProvider(spec("fedora", "42", base_type="server"),
                           config(tmp_path, "fedora", mirror="https://mirror.invalid/fedora/linux",
                                  keyring=tmp_path / "key.asc"))
    urls = [r.url for r in provider.repositories()]
    assert urls == [
        "https://mirror.invalid/fedora/linux/releases/42/Everything/x86_64/os/",
        "https://mirror.invalid/fedora/linux/updates/42/Everything/x86_64/",
    ]
    request = provider.base_request()
    assert "openssh-server" in request and "kernel" in request
    assert "systemd-boot-unsigned" in request  # the spec's default bootloader
    assert provider.profile.rpmdb.path == "/usr/lib/sysimage/rpm"


def test_kernel_override_and_aarch64(tmp_path: Path) -> None:
    custom = spec("rocky", "9", customizations=Customizations(
        kernel=Kernel(package="kernel-rt"), bootloader="grub"))
    custom = Spec(image=Image(name="t", base=Base(os="rocky", version="9", arch="aarch64")),
                  customizations=custom.customizations)
    provider = RpmProvider(custom, config(tmp_path, "rocky", mirror="https://m.invalid/rocky",
                                          keyring=tmp_path / "k"))
    assert provider.arch == "aarch64"
    assert provider.repositories()[0].url == "https://m.invalid/rocky/9/BaseOS/aarch64/os/"
    assert "kernel-rt" in provider.base_request() and "kernel" not in provider.base_request()
    assert provider.profile.rpmdb.path == "/var/lib/rpm"


def test_mirror_is_never_guessed(tmp_path: Path) -> None:
    with pytest.raises(ProviderNotConfigured, match=r"providers.fedora.mirror is not set"):
        RpmProvider(spec("fedora", "43"), config(tmp_path, "fedora"))  # mirror: auto


def test_unconfigured_os(tmp_path: Path) -> None:
    with pytest.raises(ProviderNotConfigured, match=r"providers\.fedora"):
        RpmProvider(spec("fedora", "43"), Config(core=Core(cache_dir=tmp_path)))


def test_deb_repository_on_rpm_os(tmp_path: Path) -> None:
    extra = Repository(name="x", url="https://m.invalid/x", kind="deb")
    with pytest.raises(ConfigError, match="kind deb cannot be used"):
        RpmProvider(spec("fixture", "1", repositories=(extra,)),
                    config(tmp_path, "fixture", mirror=None))


def test_bad_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid OS profile"):
        parse_rpm_profile("kind: rpm\nos: x\nversion: '1'\nfrobnicate: 1\n")
    with pytest.raises(ConfigError, match="not an RPM-family profile"):
        parse_rpm_profile("kind: deb\n")

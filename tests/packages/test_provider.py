"""The deb provider: profiles, mirrors, metadata caching, by-hash, credentials, trust."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from imagecomposer.config.model import Config, Core, Credentials, ProviderConfig
from imagecomposer.families import aptsources, provider_for
from imagecomposer.families.profile import available, load_profile
from imagecomposer.foundation.errors import ConfigError, DownloadError, ProviderNotConfigured
from imagecomposer.foundation.events import MetadataLoaded
from imagecomposer.resolver import Resolver
from imagecomposer.spec.model import Repository
from tests.fixtures.debrepo import Deb, DebArchive, GpgKey, RepoServer, base_system, touch_past
from tests.packages.conftest import make_config, make_spec


def test_profiles_are_data_without_mirrors() -> None:
    assert {("debian", "12"), ("debian", "13"), ("ubuntu", "22.04"),
            ("ubuntu", "24.04")} <= set(available())
    for os_name, version in available():
        profile = load_profile(os_name, version)
        assert len(profile.repositories) == 3 and profile.keyring.is_absolute()
        assert {"minimal", "server"} <= set(profile.package_sets)
        text = (Path(aptsources.__file__).with_name("profiles")
                / f"{os_name}-{version}.yml").read_text()
        assert "http" not in text  # mirrors come from config or the host
    bookworm = load_profile("debian", "12")
    assert [r.suite for r in bookworm.repositories] == ["bookworm", "bookworm-updates",
                                                        "bookworm-security"]
    assert bookworm.expand(bookworm.kernel, "aarch64") == "linux-image-arm64"


def test_provider_not_configured(tmp_path: Path) -> None:
    with pytest.raises(ProviderNotConfigured,
                       match="Provider 'ubuntu' is not configured in the global configuration"):
        provider_for(make_spec(os="ubuntu", version="22.04"), Config())


def test_apt_sources_both_formats(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text(
        "# comment\ndeb-src http://src.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.invalid/debian/ bookworm main\n")
    (etc / "sources.list.d" / "x.sources").write_text(
        "Types: deb\nURIs: http://two.invalid/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb\nEnabled: no\nURIs: http://off.invalid/\n"
        "Suites: trixie\n")
    assert aptsources.mirror_for("bookworm", etc) == "http://one.invalid/debian"
    assert aptsources.mirror_for("bookworm-security", etc) == \
        "http://two.invalid/debian-security"
    assert aptsources.mirror_for("trixie", etc) is None
    sources = aptsources.read_sources(etc)
    assert sources[0].signed_by == "/k.gpg" and sources[0].components == ("main",)


def test_host_archive_serves_every_suite_of_its_distribution(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "x.list").write_text(
        "deb http://other.invalid/apt nodistro main\n"
        "deb http://deb.example.invalid/debian bookworm bookworm-updates main\n"
        "deb http://sec.example.invalid/debian-security bookworm-security main\n"
        "deb http://old.example.invalid/debian-security buster/updates main\n")
    debian = {"bookworm", "trixie", "buster"}
    assert aptsources.mirror_for("trixie", etc) is None  # not listed, no family given
    assert aptsources.mirror_for("trixie", etc, codenames=debian) == \
        "http://deb.example.invalid/debian"
    assert aptsources.mirror_for("trixie-updates", etc, codenames=debian) == \
        "http://deb.example.invalid/debian"
    assert aptsources.mirror_for("trixie-security", etc, codenames=debian) == \
        "http://sec.example.invalid/debian-security"
    assert aptsources.mirror_for("noble", etc, codenames={"jammy", "noble"}) is None


def test_mirror_auto_from_host_or_clear_error(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "d.list").write_text(
        "deb http://m.invalid/debian bookworm main\n"
        "deb http://m.invalid/debian-security bookworm-security main\n")
    monkeypatch.setattr(aptsources, "APT_ETC", etc)
    provider = provider_for(make_spec(), Config())
    urls = [r.url for r in provider.repositories()]
    assert urls == ["http://m.invalid/debian"] * 2 + ["http://m.invalid/debian-security"]
    # Debian 13 on a Debian 12 host: the host's Debian archives serve every suite
    trixie = provider_for(make_spec(version="13"), Config())
    assert [(r.suite, r.url) for r in trixie.repositories()] == [
        ("trixie", "http://m.invalid/debian"), ("trixie-updates", "http://m.invalid/debian"),
        ("trixie-security", "http://m.invalid/debian-security")]
    # a host whose sources name no Debian archive at all: the clear error
    (etc / "sources.list.d" / "d.list").write_text(
        "deb http://other.invalid/apt nodistro main\n")
    with pytest.raises(ConfigError, match=r"No mirror for debian 13 \(suite trixie\).*"
                                          r"Set providers.debian.mirror"):
        provider_for(make_spec(version="13"), Config())


def test_warm_load_uses_solv_cache_and_conditional_requests(
        config: Config, archive: DebArchive, server: RepoServer) -> None:
    archive.add("bookworm-updates", Deb("less", "590-3", arch="amd64", priority="important"))
    archive.publish()
    touch_past(archive.root.rglob("*Release*"))
    events: list[object] = []
    Resolver(config, events=events.append).resolve(make_spec())
    loads = [e for e in events if isinstance(e, MetadataLoaded)]
    assert [e.from_cache for e in loads][:2] == [False, False]
    indexes = server.count("Packages.xz")
    events.clear()
    Resolver(config, events=events.append).resolve(make_spec())
    loads = [e for e in events if isinstance(e, MetadataLoaded)]
    assert [e.from_cache for e in loads] == [True, True, True]
    assert server.count("/InRelease", 304) == 3  # revalidated, not downloaded again
    assert server.count("Packages.xz") == indexes  # indexes are never fetched twice


def test_by_hash(tmp_path: Path, www: Path, gpg_key: GpgKey, server: RepoServer) -> None:
    archive = DebArchive(www / "debian", gpg_key, by_hash=True)
    for suite in ("bookworm", "bookworm-updates", "bookworm-security"):
        archive.add(suite, *(base_system() if suite == "bookworm" else []))
    archive.publish()
    config = make_config(tmp_path, server.url + "/debian", gpg_key.keyring)
    assert Resolver(config).resolve(make_spec()).lock.package("bash") is not None
    assert server.count("/Packages.xz") == 0
    # two distinct indexes (the empty updates and security ones share a hash: fetched once)
    assert sum(n for (p, _), n in server.requests.items() if "/by-hash/SHA256/" in p) == 2


def test_credentials_from_config_env(tmp_path: Path, www: Path, gpg_key: GpgKey,
                                     archive: DebArchive, server: RepoServer,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    server.auth = ("builder", "s3cret")
    base = make_config(tmp_path, server.url + "/debian", gpg_key.keyring)
    with pytest.raises(DownloadError, match=r"401.*credentials"):
        Resolver(base).resolve(make_spec())
    monkeypatch.setenv("REPO_PASSWORD", "s3cret")
    config = Config(core=base.core, providers=base.providers, credentials=(
        Credentials(url_prefix=server.url, username="builder", password_env="REPO_PASSWORD"),))
    lock = Resolver(config).resolve(make_spec()).lock
    assert "s3cret" not in lock.to_json()


def test_extra_repository_needs_key_or_explicit_trust(
        config: Config, www: Path, gpg_key: GpgKey, server: RepoServer,
        caplog: pytest.LogCaptureFixture) -> None:
    extra = DebArchive(www / "extra", None, flat=True)  # unsigned flat repository
    extra.add("flat", Deb("unsigned-tool"))
    extra.publish()
    repo = Repository(name="extra", url=server.url + "/extra")
    with pytest.raises(ConfigError, match="has no key: set key:"):
        Resolver(config).resolve(make_spec(("unsigned-tool",), repositories=(repo,)))
    trusted = Repository(name="extra", url=server.url + "/extra", trusted=True)
    with caplog.at_level(logging.WARNING):
        lock = Resolver(config).resolve(make_spec(("unsigned-tool",),
                                                  repositories=(trusted,))).lock
    assert "SIGNATURE CHECKS DISABLED for repository 'extra'" in caplog.text
    assert lock.package("unsigned-tool") is not None
    assert [r.trusted for r in lock.repositories] == [False, False, False, True]


def test_default_config_has_no_mirror_host() -> None:
    config = Config(core=Core())
    assert config.providers["debian"].mirror == "auto"
    assert isinstance(config.providers["debian"], ProviderConfig)


def test_ubuntu_profile_with_configured_provider(tmp_path: Path, www: Path, gpg_key: GpgKey,
                                                 server: RepoServer) -> None:
    archive = DebArchive(www / "ubuntu", gpg_key)
    archive.add("noble", *base_system(kernel="linux-image-generic"))
    for suite in ("noble", "noble-updates", "noble-security"):
        archive.add(suite, component="universe")  # the profile's components: main universe
    archive.add("noble-updates")
    archive.add("noble-security")
    archive.publish()
    config = Config(core=Core(cache_dir=tmp_path / "cache"), providers={
        "ubuntu": ProviderConfig(kind="deb", mirror=server.url + "/ubuntu",
                                 security_mirror=server.url + "/ubuntu",
                                 keyring=gpg_key.keyring)})
    res = Resolver(config).resolve(make_spec(os="ubuntu", version="24.04"))
    assert {"linux-image-generic", "systemd-boot", "systemd-sysv"} <= {
        p.name for p in res.lock.packages}
    assert [r.suite for r in res.lock.repositories] == ["noble", "noble-updates",
                                                        "noble-security"]
    assert "Essential: yes" in res.explain("bash")


def test_credentials_never_in_urls(config: Config, tmp_path: Path, gpg_key: GpgKey) -> None:
    spec = make_spec(repositories=(Repository(name="x", url="https://u:pw@repo.invalid/deb",
                                              suite="stable", key=gpg_key.keyring),))
    with pytest.raises(ConfigError, match="credentials must not be written in the spec"):
        provider_for(spec, config)
    leaky = make_config(tmp_path, "http://u:pw@mirror.invalid/debian", gpg_key.keyring)
    with pytest.raises(ConfigError, match="do not put credentials in the URL"):
        provider_for(make_spec(), leaky)

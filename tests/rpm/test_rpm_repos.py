"""dnf .repo files written into an RPM-family image."""

from __future__ import annotations

from pathlib import Path

from rpm_helpers import RpmFixture, make_spec

from imagecomposer.config.model import Config, Core, ProviderConfig
from imagecomposer.families.rpm import RpmProvider
from imagecomposer.families.rpm.profile import RpmPackageSet, RpmProfile, RpmProfileRepository
from imagecomposer.families.rpm.repos import write_repo_files
from imagecomposer.spec.model import Repository


def test_extra_repositories_with_keys(rpm_fixture: RpmFixture, rpm_config: Config,
                                      tmp_path: Path) -> None:
    extra = Repository(name="extra", url=rpm_fixture.repo_url("extra"), key=rpm_fixture.key,
                       kind="rpm", priority=50, packages=("beta",))
    local = Repository(name="local", url=str(rpm_fixture.repos["lonely"]), kind="rpm",
                       trusted=True)
    provider = RpmProvider(make_spec(rpm_fixture, "main", extra, local), rpm_config)
    tree = tmp_path / "tree"
    written = write_repo_files(tree, provider)
    assert [p.name for p in written] == ["imagecomposer-main.repo", "imagecomposer-extra.repo"]
    text = (tree / "etc/yum.repos.d/imagecomposer-extra.repo").read_text()
    assert f"baseurl={rpm_fixture.repo_url('extra')}\n" in text
    assert "priority=50\n" in text and "includepkgs=beta\n" in text and "gpgcheck=1\n" in text
    assert "gpgkey=file:///etc/pki/rpm-gpg/imagecomposer-extra-1.asc\n" in text
    key = tree / "etc/pki/rpm-gpg/imagecomposer-extra-1.asc"
    assert key.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert not (tree / "etc/yum.repos.d/imagecomposer-local.repo").exists()  # host-local


def test_base_repositories_only_without_release_repo_files(rpm_fixture: RpmFixture,
                                                           tmp_path: Path) -> None:
    profile = RpmProfile(
        os="fixture", version="1", kind="rpm", releasever="1", keyring=rpm_fixture.key,
        repositories=(RpmProfileRepository(name="base", path="main/", priority=10),),
        architectures={"x86_64": "x86_64"}, kernel=None,
        package_sets={"minimal": RpmPackageSet()})
    config = Config(core=Core(cache_dir=tmp_path / "cache"), providers={
        "fixture": ProviderConfig(kind="rpm", mirror=rpm_fixture.url)})
    provider = RpmProvider(make_spec(rpm_fixture, "extra"), config, profile=profile)
    bare = tmp_path / "bare"
    assert [p.name for p in write_repo_files(bare, provider)] == [
        "imagecomposer-base.repo", "imagecomposer-extra.repo"]
    base = (bare / "etc/yum.repos.d/imagecomposer-base.repo").read_text()
    assert f"baseurl={rpm_fixture.url}main/\n" in base and "priority=10\n" in base
    shipped = tmp_path / "shipped"
    (shipped / "etc/yum.repos.d").mkdir(parents=True)
    (shipped / "etc/yum.repos.d/fixture.repo").write_text("[fixture]\n")
    assert [p.name for p in write_repo_files(shipped, provider)] == [
        "imagecomposer-extra.repo"]


def test_repo_files_and_keys_stay_in_the_tree(rpm_fixture: RpmFixture, rpm_config: Config,
                                              tmp_path: Path) -> None:
    """Planted links at /etc/yum.repos.d and /etc/pki/rpm-gpg (absolute, and relative
    climbing out) resolve inside the tree: the host directories they name stay empty."""
    host_repos, host_keys = tmp_path / "host/repos", tmp_path / "host/keys"
    host_repos.mkdir(parents=True)
    host_keys.mkdir(parents=True)
    extra = Repository(name="extra", url=rpm_fixture.repo_url("extra"), key=rpm_fixture.key,
                       kind="rpm")
    provider = RpmProvider(make_spec(rpm_fixture, "main", extra), rpm_config)
    tree = tmp_path / "tree"
    (tree / "etc/pki").mkdir(parents=True)
    (tree / "etc/yum.repos.d").symlink_to(host_repos)
    (tree / "etc/pki/rpm-gpg").symlink_to("../" * 12 + str(host_keys).lstrip("/"))
    written = write_repo_files(tree, provider)
    inside = tree / str(host_repos).lstrip("/")
    assert [p.parent for p in written] == [inside, inside]
    assert (tree / str(host_keys).lstrip("/") / "imagecomposer-extra-1.asc").is_file()
    assert list(host_repos.iterdir()) == [] and list(host_keys.iterdir()) == []


def test_a_keyring_planted_in_the_cache_is_never_used(rpm_fixture: RpmFixture,
                                                      rpm_config: Config,
                                                      tmp_path: Path) -> None:
    """Prepared keyrings decide which signatures are accepted (repomd.xml, packages) and
    which keys the image trusts: they are made for each build outside the cache, so whoever
    can write the cache cannot slip in their own (issue 18)."""
    import hashlib
    import shutil

    from imagecomposer.families.rpm.keys import key_files

    extra = Repository(name="extra", url=rpm_fixture.repo_url("extra"), key=rpm_fixture.key,
                       kind="rpm", priority=50, packages=("beta",))
    spec = make_spec(rpm_fixture, "main", extra)
    real = write_repo_files(tmp_path / "first", RpmProvider(spec, rpm_config))
    real_key = (tmp_path / "first/etc/pki/rpm-gpg/imagecomposer-extra-1.asc").read_bytes()
    assert real
    # where the keyring of these key files was kept in the cache: the attacker's goes there
    digest = hashlib.sha256()
    for path in key_files([rpm_fixture.key], what="extra"):
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    planted = rpm_config.metadata_cache_dir / "rpm/keyrings" / digest.hexdigest()[:32]
    shutil.rmtree(planted, ignore_errors=True)
    planted.mkdir(parents=True)
    rogue = rpm_fixture.packages.key_b.public.read_bytes()
    (planted / "key-0123456789ABCDEF.asc").write_bytes(rogue)
    (planted / "keyring.gpg").write_bytes(b"rogue keyring")
    (planted / "rpmdb").mkdir()
    (planted / "complete").write_text("planted\n")
    write_repo_files(tmp_path / "second", RpmProvider(spec, rpm_config))
    key = (tmp_path / "second/etc/pki/rpm-gpg/imagecomposer-extra-1.asc").read_bytes()
    assert key == real_key != rogue  # before: the planted key went into the image
    assert [p.name for p in (rpm_config.metadata_cache_dir / "rpm/keyrings").iterdir()] == [
        planted.name]  # nothing of the builds' own keyrings is in the cache

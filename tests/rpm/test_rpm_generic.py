"""The RPM provider inside the family-generic pipeline pieces (Resolver, PackageCache).

The Resolver and PackageCache came from the deb branch, the Composer from the rootfs branch;
the full pipeline on the example spec is in test_rpm_pipeline.py.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from rpm_helpers import RpmFixture, make_spec

from imagecomposer.config.model import Config
from imagecomposer.families.rpm.install import install_rpms
from imagecomposer.foundation.errors import SignatureError

resolver = pytest.importorskip("imagecomposer.resolver.resolver")
store = pytest.importorskip("imagecomposer.cache.store")
providers = pytest.importorskip("imagecomposer.families")


def test_resolver_cache_and_install(rpm_fixture: RpmFixture, rpm_config: Config,
                                    tmp_path: Path) -> None:
    spec = make_spec(rpm_fixture, install=("alpha", "rich", "filedep", "mailer"),
                     remove=("mta-exim",))
    resolution = resolver.Resolver(rpm_config).resolve(spec)
    lock = resolution.lock
    assert lock.kind == "rpm"
    assert {"alpha", "beta", "helper", "mta-postfix"} <= {p.name for p in lock.packages}
    assert "mta-exim" not in {p.name for p in lock.packages}
    assert "required by alpha" in resolution.explain("beta")
    provider = providers.provider_for(spec, rpm_config)
    with store.PackageCache(rpm_config) as cache:
        files = cache.fetch(lock, provider=provider)  # verify_package: signatures
        assert set(files) == {p.name for p in lock.packages}
        again = cache.fetch(lock, provider=provider)
        assert again == files
    if not _root():
        pytest.skip("installing needs root")
    result = install_rpms(lock, files, tmp_path / "tree")
    assert "alpha post-install scriptlet ran" in result.output


def test_cache_refuses_badly_signed_package(rpm_fixture: RpmFixture,
                                            rpm_config: Config) -> None:
    spec = make_spec(rpm_fixture, "wrong-key", install=("lonely",))
    lock = resolver.Resolver(rpm_config).resolve(spec).lock
    provider = providers.provider_for(spec, rpm_config)
    with store.PackageCache(rpm_config) as cache:
        with pytest.raises(SignatureError, match="key that is not configured"):
            cache.fetch(lock, provider=provider)
        # the store is content-addressed (the bytes match the index's SHA256), so the file
        # may stay; a cache hit is verified again and still fails
        with pytest.raises(SignatureError):
            cache.fetch(lock, provider=provider)


def test_rpm_request_syntax(rpm_fixture: RpmFixture, rpm_config: Config) -> None:
    """name-version pins and file paths need the Resolver to use provider.request_jobs."""
    spec = make_spec(rpm_fixture, install=("beta-1.0", "/usr/libexec/helper/tool"))
    lock = resolver.Resolver(rpm_config).resolve(spec).lock
    beta = lock.package("beta")
    assert beta is not None and beta.version == "1.0-1"
    assert lock.package("helper") is not None


def _root() -> bool:
    import os

    return os.geteuid() == 0


@pytest.mark.root
def test_packages_compose_configuration_on_fixture(rpm_fixture: RpmFixture,
                                                   rpm_config: Config, tmp_path: Path) -> None:
    """Composer.install and Composer.configure dispatch on an rpm lock (docs/rpm.md)."""
    import subprocess

    from imagecomposer.compose.layout import Layout, PlannedPartition
    from imagecomposer.families.rpm.install import find_rpmdb, rpm_command
    from imagecomposer.spec.model import Services, User

    composer = pytest.importorskip("imagecomposer.compose.composer")
    packages_stage = pytest.importorskip("imagecomposer.pipeline.packages")
    spec = make_spec(rpm_fixture, install=("fixture-setup", "fixture-systemd",
                                           "fixture-kernel", "fixture-dracut", "alpha"))
    spec = attrs.evolve(spec, customizations=attrs.evolve(
        spec.customizations, hostname="rpm-fixture", bootloader="none",
        users=(User(name="alice"),), services=Services(enabled=("fixture-hello",))))
    result = packages_stage.run_packages_stage(spec, rpm_config,
                                               lock_path=tmp_path / "lock.json")
    tree = tmp_path / "root"
    composer.Composer(rpm_config).install(result.lock, result.packages, tree)
    assert find_rpmdb(tree) == ("/usr/lib/sysimage/rpm", "sqlite")
    assert not (tree / "boot/vmlinuz-6.1.0-fixture").exists()  # configuration's job
    root = PlannedPartition(
        name="root", type="root", type_guid="4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        filesystem="ext4", start=1 << 20, size=(1 << 30) - (2 << 20),
        partuuid="00000000-0000-4000-8000-000000000002",
        fsuuid="00000000-0000-4000-8000-000000000003", number=1, mountpoint="/")
    layout = Layout(table="gpt", size=1 << 30, disk_id="00000000-0000-4000-8000-000000000001",
                    partitions=(root,))
    composer.Composer(rpm_config).configure(spec, tree, layout, result.lock)
    assert (tree / "etc/hostname").read_text() == "rpm-fixture\n"
    assert "alice:" in (tree / "etc/passwd").read_text()
    assert (tree / "boot/vmlinuz-6.1.0-fixture").is_file()
    assert (tree / "boot/initrd.img-6.1.0-fixture").is_file()
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    assert {p.name for p in wants.iterdir()} >= {"fixture-hello.service",
                                                 "systemd-networkd.service"}
    assert (tree / "var/alpha-post.log").is_file()
    rpmdb = find_rpmdb(tree)
    assert rpmdb is not None
    installed = subprocess.run([*rpm_command(tree, *rpmdb), "-qa", "--qf", "%{NAME}\\n"],
                               capture_output=True, text=True, check=True).stdout.split()
    assert sorted(n for n in installed if n != "gpg-pubkey") == sorted(
        p.name for p in result.lock.packages)
    result.cache.close()

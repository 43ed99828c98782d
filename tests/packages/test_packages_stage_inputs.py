"""The packages stage hashes exactly the package request: a field the resolver reads reruns
it, a field it never reads does not (issue 11: read_only_root adds cryptsetup-bin).

Hermetic: the real validate and packages stages against a signed test archive on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from imagecomposer.config.model import Config
from imagecomposer.families.request import package_request
from imagecomposer.foundation.fingerprint import fingerprint
from imagecomposer.lock import Lock
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.pipeline.engine import StageOutcome
from imagecomposer.pipeline.inputs import configuration_input, packages_input
from imagecomposer.spec.model import Spec
from tests.fixtures.debrepo import Deb, DebArchive, GpgKey, RepoServer, base_system
from tests.packages.conftest import make_config, make_spec


def with_security(spec: Spec, **changes: object) -> Spec:
    c = spec.customizations
    return attrs.evolve(spec, customizations=attrs.evolve(
        c, security=attrs.evolve(c.security, **changes)))


def test_read_only_root_and_selinux_rerun_the_packages_stage_the_selinux_mode_does_not(
        tmp_path: Path, www: Path, gpg_key: GpgKey, server: RepoServer) -> None:
    archive = DebArchive(www / "debian", gpg_key)
    archive.add("bookworm", *base_system(),
                Deb("cryptsetup-bin", "2:2.6.1-4", arch="amd64", depends="libc6"),
                Deb("selinux-basics", "0.5.8", arch="all"),
                Deb("selinux-policy-default", "2:2.20221101-2", arch="all"))
    archive.add("bookworm-updates")
    archive.add("bookworm-security")
    archive.publish()
    config = make_config(tmp_path, server.url + "/debian", gpg_key.keyring)
    pipeline = ImagePipeline(config)
    out = tmp_path / "out"
    options = BuildOptions(until="packages", output_dir=out)

    def packages(spec: Spec) -> tuple[StageOutcome, set[str]]:
        report = pipeline.build(spec, options)
        outcome = next(o for o in report.run.outcomes if o.stage == "packages")
        return outcome, {p.name for p in Lock.read(out / "test.lock.json").packages}

    spec = make_spec()
    outcome, names = packages(spec)
    assert outcome.status == "ran" and "cryptsetup-bin" not in names

    # SELinux on adds the profile's policy packages (issue 12: it did nothing on Debian)
    outcome, names = packages(with_security(spec, selinux="permissive"))
    assert (outcome.status, outcome.reason) == ("ran", "input 'request.selinux' changed")
    assert {"selinux-basics", "selinux-policy-default"} <= names
    # the mode is the configuration stage's: permissive and enforcing install the same
    outcome, _ = packages(with_security(spec, selinux="enforcing"))
    assert (outcome.status, outcome.reason) == ("skipped", "up to date")

    outcome, names = packages(with_security(spec, selinux="enforcing", read_only_root=True))
    assert (outcome.status, outcome.reason) == (
        "ran", "input 'request.read_only_root' changed")
    assert "cryptsetup-bin" in names  # the profile's read_only_root packages


def test_the_request_is_all_the_packages_stage_hashes(tmp_path: Path) -> None:
    config = Config()
    spec = make_spec(("openssh-server",))
    key = fingerprint(packages_input(spec, config))
    assert packages_input(spec, config).request == package_request(spec)
    # fields of the configuration stage only: the packages key stays
    for other in (attrs.evolve(spec, customizations=attrs.evolve(
                      spec.customizations, hostname="web", timezone="Europe/Paris")),):
        assert fingerprint(packages_input(other, config)) == key
        assert fingerprint(configuration_input(other, config, "00", {"compose": ""},
                                               epoch=0)) != \
            fingerprint(configuration_input(spec, config, "00", {"compose": ""}, epoch=0))
    # the SELinux mode is the configuration stage's; on or off is the resolver's
    permissive = with_security(spec, selinux="permissive")
    assert fingerprint(packages_input(with_security(spec, selinux="enforcing"), config)) == \
        fingerprint(packages_input(permissive, config))
    # what the resolver reads: each one changes it
    c = spec.customizations
    for changed in (
            with_security(spec, read_only_root=True),
            with_security(spec, selinux="enforcing"),
            attrs.evolve(spec, customizations=attrs.evolve(c, bootloader="grub")),
            attrs.evolve(spec, customizations=attrs.evolve(
                c, kernel=attrs.evolve(c.kernel, package="linux-image-rt-amd64"))),
            attrs.evolve(spec, customizations=attrs.evolve(c, packages=attrs.evolve(
                c.packages, recommends=True))),
            make_spec(("openssh-server",), remove=("less",))):
        assert fingerprint(packages_input(changed, config)) != key
    # the provider's keyring by content, the --locked lock by content
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(b"one")
    provider = config.providers["debian"]
    keyed = attrs.evolve(config, providers={"debian": attrs.evolve(provider, keyring=keyring)})
    before = fingerprint(packages_input(spec, keyed))
    keyring.write_bytes(b"two")
    assert fingerprint(packages_input(spec, keyed)) != before
    lock = tmp_path / "lock.json"
    lock.write_text("{}")
    locked = fingerprint(packages_input(spec, config, lock))
    lock.write_text('{"packages": []}')
    assert fingerprint(packages_input(spec, config, lock)) != locked

"""``validate`` finds without the network what the packages stage would stop at (issue 12:
it said "valid" for specs that failed a second later): the family's checks
(:meth:`Family.check`), each positioned at the spec field it is about."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from imagecomposer.config.model import Config, ProviderConfig
from imagecomposer.families.validation import check, validate
from imagecomposer.foundation.errors import ValidationError
from imagecomposer.spec import Spec

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def config(**provider: object) -> Config:
    """A Debian provider that needs neither the host's keyring nor its apt sources."""
    settings = ProviderConfig(kind="deb", mirror="http://127.0.0.1:9/debian",
                              security_mirror="http://127.0.0.1:9/debian", keyring=KEYRING)
    return Config(providers={"debian": attrs.evolve(settings, **provider)})


def errors(text: str, cfg: Config | None = None) -> list[str]:
    spec = Spec.from_text("image: {name: web, base: {os: debian, version: '12'}}\n" + text)
    return [f"{p.line}: {p.message}" for p in check(spec, cfg or config()).errors]


def test_a_plain_debian_spec_is_valid(tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(b"")
    assert errors("", config(keyring=keyring)) == []


def test_missing_keyring() -> None:
    found = errors("", config(keyring=Path("/nonexistent/keyring.gpg")))
    assert found == ["1: the keyring /nonexistent/keyring.gpg does not exist: "
                     "providers.debian.keyring in the global configuration"]


def test_os_version_without_a_profile() -> None:
    spec = Spec.from_text("image: {name: web, base: {os: debian, version: '11'}}\n")
    found = [p.message for p in check(spec, config()).errors]
    assert len(found) == 1 and "No OS profile for debian 11" in found[0]


def test_remote_repository_without_a_key_and_credentials_in_a_url() -> None:
    found = errors("repositories:\n"
                   "  - {name: extra, url: 'https://example.invalid/debian', suite: x}\n"
                   "  - {name: local, url: 'file:///srv/repo', suite: x}\n"
                   "  - {name: creds, url: 'https://u:p@example.invalid/d', suite: x,"
                   " trusted: true}\n")
    assert found == [
        "3: repository 'extra' has no key: set key: to its OpenPGP public key file, or "
        "trusted: true to skip checks",
        "5: repository 'creds': credentials must not be written in the spec; put them in "
        "the global configuration (credentials: url_prefix, username, password_env)"]


def test_a_kernel_package_of_another_family() -> None:
    found = errors("customizations: {kernel: {package: kernel-core}}\n")
    assert len(found) == 1 and "'kernel-core' is not a kernel package of debian 12" in found[0]


def test_selinux_needs_filesystems_that_keep_labels() -> None:
    found = errors("customizations: {security: {selinux: enforcing}}\n"
                   "disk:\n  partitions:\n"
                   "    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}\n"
                   "    - {name: root, type: root, size: rest, filesystem: xfs}\n")
    assert len(found) == 1 and "SELinux enforcing labels every file at build time, but a " \
        "xfs filesystem" in found[0] and found[0].startswith("6: ")


def test_selinux_on_debian_is_accepted_with_its_packages() -> None:
    assert errors("customizations: {security: {selinux: enforcing}}\n") == []


def test_the_cli_reports_them_as_one_validation_error(tmp_path: Path) -> None:
    spec = tmp_path / "old.yml"
    spec.write_text("image: {name: old, base: {os: debian, version: '11'}}\n")
    done = subprocess.run([sys.executable, "-m", "imagecomposer", "validate", str(spec)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert "Validation error" in done.stderr and "No OS profile for debian 11" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_raises_every_problem() -> None:
    spec = Spec.from_text("image: {name: web, base: {os: debian, version: '12'}}\n"
                          "repositories:\n  - {name: a, url: 'https://x.invalid/', suite: s}\n")
    with pytest.raises(ValidationError, match="has no key"):
        validate(spec, config(keyring=Path("/nonexistent")))


@pytest.mark.parametrize(("os", "version", "kind"), [("ubuntu", "24.04", "deb"),
                                                     ("azurelinux", "3.0", "rpm")])
def test_selinux_where_the_profile_offers_none(os: str, version: str, kind: str) -> None:
    settings = ProviderConfig(kind=kind, mirror="http://127.0.0.1:9/",  # type: ignore[arg-type]
                              security_mirror="http://127.0.0.1:9/", keyring=KEYRING)
    spec = Spec.from_text(f"image: {{name: web, base: {{os: {os}, version: '{version}'}}}}\n"
                          "customizations: {security: {selinux: permissive}}\n")
    found = [p.message for p in check(spec, Config(providers={os: settings})).errors]
    assert any(m.startswith(f"SELinux permissive is not available for {os} {version}: its "
                            "OS profile installs no SELinux policy") for m in found), found

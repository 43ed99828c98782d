"""Short reprs and Jupyter tables (issue 11, deliverable 5): Spec, Resolution, Lock,
BuildReport and the composable objects print one short line naming what they are, and
neither the repr nor ``_repr_html_`` ever shows a secret."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import imagecomposer
from imagecomposer.config.model import Config, Core
from imagecomposer.lock import Lock, LockedPackage, LockedRepository
from imagecomposer.pipeline.build import BuildReport
from imagecomposer.pipeline.engine import RunReport, StageOutcome
from imagecomposer.resolver.resolution import Reason, Resolution
from imagecomposer.spec import Spec

PASSWORD_HASH = ("$6$reprtest0001$h1QGDoBT3Miv/XhjdlDLGAGU2b3wu8pzD5MCLU1TYcDi21mt/pXRZWgwRJ5s"
                 "OeneE4LhOj6hdmO8kwZW/U6R2.")
ROOT_HASH = ("$6$reprtest0002$SqqWcQZ.TeTOvaUagyI6IJ95WT9663HMpk3HLSJh00JSLX4Qphiv909kCU88"
             "uMAgTDzxx2QGL/D7vCDMM4FNj0")
PASSPHRASE = "correct-horse-battery-staple-7731"
FILE_SECRET = "api_token=3f9d2c61-inline-secret-content"
URL_PASSWORD = "s3cr3t-mirror-pw"
VARIABLE_SECRET = "variable-secret-value-5521"
MAX_REPR = 200


def ssh_key(comment: str) -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{public} {comment}"


@attrs.frozen
class Secrets:
    spec: Spec
    values: tuple[str, ...]  # strings no repr or table may contain
    key: Path


@pytest.fixture
def secret_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Secrets:
    private = ed25519.Ed25519PrivateKey.generate()
    key_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()))
    (tmp_path / "release.pem").write_bytes(key_pem)
    (tmp_path / "passphrase").write_text(PASSPHRASE + "\n")
    (tmp_path / "db.key").write_text("-----BEGIN PRIVATE KEY-----\nfake\n")
    (tmp_path / "db.crt").write_text("-----BEGIN CERTIFICATE-----\nfake\n")
    (tmp_path / "root.key").write_bytes(b"luks-key-material-0042")
    monkeypatch.setenv("REPR_TEST_PASSPHRASE", PASSPHRASE)
    alice, bob = ssh_key("alice@laptop"), ssh_key("bob@desk")
    text = f"""
image: {{name: debian-12-minimal, version: "1.0", base: {{os: debian, version: "12"}}}}
variables: {{token: {VARIABLE_SECRET}}}
repositories:
  - {{name: internal, url: "https://deploy:{URL_PASSWORD}@repo.invalid/debian", suite: stable}}
customizations:
  hostname: web
  root_password_hash: "{ROOT_HASH}"
  packages: {{install: [openssh-server, curl, vim, git, htop, jq]}}
  users:
    - name: alice
      password_hash: "{PASSWORD_HASH}"
      ssh_keys: ["{alice}", "{bob}"]
      sudo: true
  files:
    - {{destination: /etc/app/token, content: "{FILE_SECRET} ${{token}}", mode: "0600"}}
  security:
    secure_boot: {{key: ./db.key, cert: ./db.crt}}
disk:
  partitions:
    - {{name: esp, type: esp, size: 512MiB, filesystem: vfat, mountpoint: /boot/efi}}
    - name: root
      type: root
      size: rest
      mountpoint: /
      encryption: {{type: luks2, key_file: ./root.key, embed_key: true}}
output:
  formats: [raw, qcow2]
  sign: {{key: ./release.pem, passphrase_file: ./passphrase}}
"""
    spec = Spec.from_text(text, name="secret.yml", base_dir=tmp_path)
    keys = tuple(k.split()[1] for k in (alice, bob))  # the base64 key data
    pem_body = tuple(line for line in key_pem.decode().splitlines() if "-----" not in line)
    values = (PASSWORD_HASH, ROOT_HASH, PASSPHRASE, FILE_SECRET, URL_PASSWORD,
              VARIABLE_SECRET, *keys, *pem_body, "luks-key-material-0042",
              base64.b64encode(private.private_bytes_raw()).decode())
    return Secrets(spec, values, tmp_path / "release.pem")


def nested(spec: Spec) -> Iterator[object]:
    """The spec and every part of it that holds (or sits next to) a secret."""
    c = spec.customizations
    yield from (spec, c, *c.users, *c.files, c.security, c.security.secure_boot,
                *spec.repositories, spec.output, spec.output.sign, spec.disk,
                *spec.disk.partitions)


def assert_clean(text: str, secrets: Secrets) -> None:
    for value in secrets.values:
        assert value not in text
        assert html.escape(value) not in text


def test_spec_repr_is_short_and_names_the_image(secret_spec: Secrets) -> None:
    text = repr(secret_spec.spec)
    assert text == ("Spec(name='debian-12-minimal', os='debian 12 x86_64', packages=6, "
                    "users=1, formats=raw,qcow2)")
    assert len(text) < MAX_REPR


def test_no_repr_or_table_of_the_spec_shows_a_secret(secret_spec: Secrets) -> None:
    spec = secret_spec.spec
    assert spec.customizations.users[0].password_hash == PASSWORD_HASH  # the data is there
    for part in nested(spec):
        assert_clean(repr(part), secret_spec)
        assert_clean(str(part), secret_spec)
    page = spec._repr_html_()
    assert_clean(page, secret_spec)
    assert "<table>" in page and "debian-12-minimal" in page
    assert "alice (sudo, password set, 2 SSH key(s))" in page
    assert str(secret_spec.key) in page  # paths to key files are fine
    user = repr(spec.customizations.users[0])
    assert "password_hash='<redacted>'" in user and "ssh_keys=<2 redacted>" in user
    assert "https://<redacted>@repo.invalid/debian" in repr(spec.repositories[0])


def test_signer_repr_has_no_key_material(secret_spec: Secrets) -> None:
    signer = imagecomposer.Signer.from_spec(secret_spec.spec.output.sign)
    text = repr(signer)
    assert text.startswith("Signer(algorithm='ed25519', key_id=")
    assert str(secret_spec.key) in text and len(text) < MAX_REPR
    assert_clean(text, secret_spec)


def make_lock() -> Lock:
    repo = LockedRepository(name="main", url="https://deploy:pw@repo.invalid/debian",
                            kind="deb", suite="bookworm", components=("main",))
    packages = tuple(
        LockedPackage(name=f"pkg{i}", version=f"1.{i}-1", arch="amd64", repository="main",
                      url=f"https://repo.invalid/pool/pkg{i}.deb", sha256=f"{i:064x}",
                      size=1000 * (i + 1))
        for i in range(300))
    return Lock(os="debian", version="12", arch="amd64", kind="deb", repositories=(repo,),
                packages=packages, requested=("pkg0",))


def test_lock_and_resolution_reprs_are_short_with_full_tables() -> None:
    lock = make_lock()
    assert repr(lock) == (f"Lock(os='debian 12', arch='amd64', kind='deb', packages=300, "
                          f"repositories=1, hash='{lock.hash[:12]}')")
    page = lock._repr_html_()
    assert page.count("<tr>") == 301 and "pkg299" in page and "pw@" not in page
    reasons = {"pkg1": Reason("dependency", "pkg0", "pkg1 (>= 1.0) <evil>")}
    resolution = Resolution(lock, reasons, seconds=1.5)
    text = repr(resolution)
    assert len(text) < MAX_REPR and "\n" not in text
    assert text.startswith("<Resolution debian 12 amd64: 300 packages,")
    assert str(resolution).startswith(text + "\n  pkg0 1.0-1 [main]")  # `resolve` prints it
    page = resolution._repr_html_()
    assert page.count("<tr>") == 301 and "&lt;evil&gt;" in page and "<evil>" not in page


def test_build_report_repr_and_table() -> None:
    run = RunReport("web", (StageOutcome("validate", "ran", "", 0.4),
                            StageOutcome("packages", "skipped", "inputs <unchanged>"),
                            StageOutcome("compose", "failed", "Script returned non-zero", 2.0)),
                    seconds=2.5)
    report = BuildReport(run, Path("/srv/out/web"))
    assert repr(report) == ("BuildReport(build='web', ran=1, skipped=1, failed=1, "
                            "seconds=2.5, output_dir='/srv/out/web', image_cache_hit=False)")
    page = report._repr_html_()
    assert "inputs &lt;unchanged&gt;" in page and page.count("<tr>") == 4


def test_composable_objects_name_their_configuration(tmp_path: Path) -> None:
    config = Config(core=Core(cache_dir=tmp_path / "cache", work_dir=tmp_path / "work",
                              parallel=3))
    objects = {
        "Resolver": imagecomposer.Resolver(config),
        "Composer": imagecomposer.Composer(config),
        "Exporter": imagecomposer.Exporter(parallel=2),
        "PackageCache": imagecomposer.PackageCache(config),
        "ImageCache": imagecomposer.ImageCache(config.image_cache_dir, max_count=3),
        "ImagePipeline": imagecomposer.ImagePipeline(config),
    }
    for name, obj in objects.items():
        text = repr(obj)
        assert text.startswith(f"{name}(") and " at 0x" not in text, text
        assert len(text) < MAX_REPR
    assert repr(objects["Resolver"]) == \
        f"Resolver(metadata_cache='{tmp_path}/cache/metadata', parallel=3)"
    assert repr(objects["Exporter"]) == "Exporter(parallel=2)"
    assert f"root='{tmp_path}/cache/packages', enabled=True, max_size='10.0 GiB'" in \
        repr(objects["PackageCache"])
    assert repr(objects["ImageCache"]) == \
        f"ImageCache(root='{tmp_path}/cache/images', max_count=3, enabled=True)"
    assert f"work_dir='{tmp_path}/work'" in repr(objects["ImagePipeline"])

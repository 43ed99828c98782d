"""Real boots under QEMU (TCG on these machines): a tiny image made from Debian's kernel,
busybox-static and systemd-boot, assembled without loop devices, reaches its login
prompt; under Secure Boot the signed image boots and the unsigned one is refused."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fixtures.selftest import LOGIN, SelftestInputs, build_selftest_image, fetch_inputs

from imagecomposer.boot import boot, read_file
from imagecomposer.foundation.errors import BootError

pytestmark = [pytest.mark.boot, pytest.mark.network]


@pytest.fixture(scope="session")
def inputs(pytestconfig: pytest.Config) -> SelftestInputs:
    return fetch_inputs(Path(pytestconfig.cache.mkdir("imagecomposer-selftest")))


@pytest.fixture(scope="session")
def db_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("db")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imagecomposer test db")])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    key_path, cert_path = where / "db.key", where / "db.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_selftest_image_boots_to_its_prompt(tmp_path: Path, inputs: SelftestInputs) -> None:
    built = build_selftest_image(inputs, tmp_path / "disk.raw", workdir=tmp_path / "work",
                                 marker="m42")
    log = tmp_path / "console.log"
    result = boot(built.output, expect=LOGIN, markers=["selftest: marker m42"], timeout=120,
                  console_log=log, check=lambda image: None)
    print(result.summary)
    assert result.seconds < 120 and result.accelerator in ("kvm", "tcg")
    assert "selftest: kernel" in result.console_tail
    assert "EFI stub" in log.read_text()
    # the boot ran on a snapshot: the image is unchanged and readable offline
    assert read_file(built.output, "root", "/etc/hostname") == b"testimage\n"
    assert read_file(built.output, "esp", "/loader/entries/selftest.conf").count(b"m42") == 1


def test_secure_boot_accepts_signed_and_refuses_unsigned(
        tmp_path: Path, inputs: SelftestInputs, db_key: tuple[Path, Path]) -> None:
    key, cert = db_key
    signed = build_selftest_image(inputs, tmp_path / "signed.raw", workdir=tmp_path / "w",
                                  marker="sb", sign=(key, cert))
    result = boot(signed.output, expect=LOGIN, secure_boot=True, secure_boot_cert=cert,
                  timeout=120)
    print(result.summary)
    assert result.secure_boot and "Secure Boot is enabled" in result.console_tail

    unsigned = build_selftest_image(inputs, tmp_path / "unsigned.raw", workdir=tmp_path / "w",
                                    marker="nosig")
    with pytest.raises(BootError, match="'Access Denied' on the console") as info:
        boot(unsigned.output, expect=LOGIN, secure_boot=True, secure_boot_cert=cert,
             timeout=120)
    assert "failed to load Boot0001" in str(info.value)


def test_bios_mbr_image_boots_with_seabios(tmp_path: Path, inputs: SelftestInputs) -> None:
    built = build_selftest_image(inputs, tmp_path / "bios.raw", workdir=tmp_path / "work",
                                 marker="bios", firmware="bios")
    assert built.layout.table == "mbr"
    assert built.output.read_bytes()[510:512] == b"\x55\xaa"
    result = boot(built.output, firmware="bios", expect=LOGIN, timeout=120,
                  markers=["selftest: marker bios"])
    print(result.summary)
    assert result.firmware == "bios"
    assert read_file(built.output, 1, "/syslinux.cfg").startswith(b"SERIAL 0")

"""Secure Boot and signatures on a real image: the boot chain signed with the spec's db key
boots under OVMF with Secure Boot enforced and that key enrolled; an unsigned image is
refused; every published artifact carries a detached signature stock OpenSSL verifies.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imagecomposer.boot import boot
from imagecomposer.config.model import Config
from imagecomposer.export.verify import verify_outputs
from imagecomposer.foundation.errors import BootError
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec import Spec

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.boot, pytest.mark.slow]

EXAMPLES = Path(__file__).parents[2] / "examples"


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def signed_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("sb")
    shutil.copytree(EXAMPLES / "files", work / "files")
    openssl("req", "-quiet", "-newkey", "rsa:2048", "-nodes", "-keyout", work / "db.key",
            "-new", "-x509", "-sha256", "-days", "30", "-subj", "/CN=imagecomposer test db/",
            "-out", work / "db.crt")
    openssl("genpkey", "-algorithm", "ed25519", "-out", work / "release.pem")
    openssl("pkey", "-in", work / "release.pem", "-pubout", "-out", work / "release.pub")
    text = (EXAMPLES / "debian-12-minimal.yml").read_text()
    text = text.replace("name: debian-12-minimal", "name: sb-minimal")
    text = text.replace("  bootloader: systemd-boot\n", "  bootloader: systemd-boot\n"
                        "  security:\n    secure_boot: {key: ./db.key, cert: ./db.crt}\n")
    text = text.replace("  sbom: [spdx, cyclonedx]\n",
                        "  sbom: [spdx, cyclonedx]\n  sign: {key: ./release.pem}\n")
    assert "secure_boot" in text and "release.pem" in text
    (work / "sb.yml").write_text(text)
    return work / "sb.yml"


def test_signed_boot_chain_boots_under_secure_boot(config: Config, signed_spec: Path,
                                                   tmp_path: Path) -> None:
    spec = Spec.load(signed_spec)
    out = tmp_path / "out"
    ImagePipeline(config).build(spec, BuildOptions(output_dir=out))
    public = signed_spec.parent / "release.pub"
    verify_outputs(out, public)
    openssl("pkeyutl", "-verify", "-pubin", "-inkey", public, "-rawin",
            "-in", out / "manifest.json", "-sigfile", out / "manifest.json.sig")
    key_text = (signed_spec.parent / "release.pem").read_text().splitlines()[1]
    for path in out.iterdir():
        if path.suffix in (".json", ".sig") or path.name == "SHA256SUMS":
            assert key_text not in path.read_text(errors="replace")

    console = tmp_path / "console.log"
    result = boot(out / "sb-minimal.raw", secure_boot=True, timeout=300,
                  secure_boot_cert=signed_spec.parent / "db.crt", console_log=console)
    text = console.read_text(errors="replace")
    assert "Secure boot enabled" in text, result.console_tail
    assert f"{spec.customizations.hostname} login:" in text


def test_unsigned_image_is_refused_under_secure_boot(config: Config, signed_spec: Path,
                                                     tmp_path: Path) -> None:
    spec = Spec.load(EXAMPLES / "debian-12-minimal.yml")
    out = tmp_path / "out"
    ImagePipeline(config).build(spec, BuildOptions(output_dir=out))
    with pytest.raises(BootError, match="Access Denied"):
        boot(out / "debian-12-minimal.raw", secure_boot=True, timeout=120,
             secure_boot_cert=signed_spec.parent / "db.crt")

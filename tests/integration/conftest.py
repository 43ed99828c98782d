"""One package cache and installed-tree cache for all image builds of a test session, and
the example images built once per session (``example_build``), for every test that reads
them (the acceptance test, inspect and compare, verity, the rootless builds' comparison).

The examples are built the way a user builds them: ``imagecomposer build`` in a process of
its own, whose console output and ``--log-file`` are kept (:class:`CliBuild`), so the tests
can check what a user sees (issue 12: at most ~30 lines, no command lines) at no extra cost.
The server example gets one more authorized SSH key (``ssh_key``, made for the session) so
that a boot test can log in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from imagecomposer.config import apply_overrides, load_config
from imagecomposer.config.model import Config
from imagecomposer.spec import Spec

EXAMPLES = Path(__file__).parents[2] / "examples"


@attrs.frozen
class CliBuild:
    """What ``imagecomposer build`` printed, and its debug log file."""

    stdout: str
    stderr: str
    log: str  # the --log-file: every command and step, with timestamps
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines() + self.stdout.splitlines()


Built = tuple[Spec, CliBuild, Path]  # the spec, its first build's output, the output dir

# A one-shot unit added to the verity example for the tests: prints what is mounted how, and
# what can be written, on the serial console before the login prompt.
VERITY_CHECK_UNIT = """[Unit]
Description=imagecomposer test: report the read-only root
After=local-fs.target
Before=getty.target serial-getty@ttyS0.service

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/sh -c 'echo "VERITY-CHECK root: $(findmnt -no SOURCE,OPTIONS /)"; \\
  echo "VERITY-CHECK var: $(findmnt -no OPTIONS /var)"; \\
  echo "VERITY-CHECK tmp: $(findmnt -no FSTYPE /tmp)"; \\
  if touch /etc/probe 2>/dev/null; then echo "VERITY-CHECK etc: writable"; \\
  else echo "VERITY-CHECK etc: read-only"; fi; \\
  touch /var/tmp/probe && echo "VERITY-CHECK var: writable"'

[Install]
WantedBy=multi-user.target
"""

# every output format the Exporter writes, for the verity example (verity_check_spec)
VERITY_FORMATS = ("raw", "qcow2", "vhd", "vhd-fixed", "vhdx", "vmdk", "vmdk-stream", "vdi")


@pytest.fixture(scope="session")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    base = tmp_path_factory.mktemp("ic")
    loaded = load_config(None, environ={})
    loaded = apply_overrides(loaded, {"core.cache_dir": str(base / "cache"),
                                      "core.work_dir": str(base / "work")}, "command line")
    return loaded.config


@pytest.fixture(scope="session")
def config_file(config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's configuration as a file, for the CLI."""
    path = tmp_path_factory.mktemp("ic-config") / "imagecomposer.yml"
    path.write_text(f"core: {{cache_dir: '{config.core.cache_dir}', "
                    f"work_dir: '{config.core.work_dir}'}}\n")
    return path


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway ed25519 key pair (the private key's path; ``.pub`` beside it)."""
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "imagecomposer-test",
                    "-f", str(key)], check=True)
    return key


def cli_environment() -> dict[str, str]:
    """The caller's environment without imagecomposer settings, but for the session's seal
    key (tests/conftest.py): the CLI's cache entries are the library's, and the host's key
    is never created or used by a test."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("IMAGECOMPOSER_") or k == "IMAGECOMPOSER_SEAL_KEY"}


def with_key(name: str, key: Path, directory: Path) -> Path:
    """examples/NAME.yml with ``key`` authorized for its first user, in ``directory`` (with
    the files it copies into the image)."""
    text = (EXAMPLES / f"{name}.yml").read_text()
    marker = "      ssh_keys:\n"
    assert marker in text
    public = key.with_name(key.name + ".pub").read_text().strip()
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLES / "files", directory / "files", dirs_exist_ok=True)
    spec = directory / f"{name}.yml"
    spec.write_text(text.replace(marker, f'{marker}        - "{public}"\n', 1))
    return spec


@pytest.fixture(scope="session")
def example_build(config_file: Path, ssh_key: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Callable[[str, Path | None], Built]:
    """``example_build(name, spec_path=None)``: the spec examples/NAME.yml (or the one at
    ``spec_path``; the server example with ``ssh_key`` authorized) built once per session
    with ``imagecomposer build``; later calls return the same build."""
    built: dict[str, Built] = {}

    def build(name: str, spec_path: Path | None = None) -> Built:
        if name not in built:
            base = tmp_path_factory.mktemp(name)
            if spec_path is None:
                spec_path = (with_key(name, ssh_key, base / "spec")
                             if name == "debian-12-server" else EXAMPLES / f"{name}.yml")
            out, log = base / "out", base / "build.log"
            began = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "imagecomposer", "--config", str(config_file),
                 "--log-file", str(log), "build", "-o", str(out), str(spec_path)],
                capture_output=True, text=True, env=cli_environment(), check=False)
            seconds = time.monotonic() - began
            assert done.returncode == 0, done.stdout + done.stderr[-5000:]
            result = CliBuild(done.stdout, done.stderr, log.read_text(), seconds)
            built[name] = (Spec.load(spec_path), result, out)
        return built[name]

    return build


@pytest.fixture(scope="session")
def verity_check_spec(ssh_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/debian-12-verity.yml with :data:`VERITY_CHECK_UNIT` added, its EFI binaries
    signed for Secure Boot (``db.key``, ``db.crt``: a throwaway RSA key and certificate),
    its outputs signed (``release.pem``, RSA PKCS#1 v1.5: deterministic, and it signs the
    SHA-256 the checksums compute, where Ed25519 reads each 2 GiB output twice more, ~1 min
    per build; ``release.pub``), every output format and ``ssh_key`` authorized for its
    admin (verity.yml and these files in a directory of their own). The rootless test builds
    the same spec as an unprivileged user and compares every output with this build's: one
    build covers Secure Boot signing, dm-verity, detached signatures, provenance and every
    format, at the cost of the conversions, checksums and signatures of the formats."""
    work = tmp_path_factory.mktemp("verity-spec")
    (work / "verity-check.service").write_text(VERITY_CHECK_UNIT)
    for argv in (["req", "-quiet", "-newkey", "rsa:2048", "-nodes", "-keyout", "db.key",
                  "-new", "-x509", "-sha256", "-days", "30", "-subj",
                  "/CN=imagecomposer test db/", "-out", "db.crt"],
                 ["genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                  "release.pem"],
                 ["pkey", "-in", "release.pem", "-pubout", "-out", "release.pub"]):
        subprocess.run(["openssl", *argv], cwd=work, check=True, capture_output=True)
    text = (EXAMPLES / "debian-12-verity.yml").read_text()
    public = ssh_key.with_name(ssh_key.name + ".pub").read_text().strip()
    for old, new in (
            ("      shell: /bin/bash\n",
             f"      shell: /bin/bash\n      ssh_keys: [\"{public}\"]\n"),
            ("  services:\n    enabled: [systemd-networkd]\n",
             "  files:\n    - {source: ./verity-check.service, destination: "
             "/etc/systemd/system/verity-check.service, mode: \"0644\"}\n"
             "  services:\n    enabled: [systemd-networkd, verity-check]\n"),
            ("    read_only_root: true\n",
             "    read_only_root: true\n    secure_boot: {key: ./db.key, cert: ./db.crt}\n"),
            ("  formats: [raw]\n",
             f"  formats: [{', '.join(VERITY_FORMATS)}]\n  sign: {{key: ./release.pem}}\n")):
        assert old in text
        text = text.replace(old, new)
    # no image cache: storing every format in it would cost the root build ~45 s of copying
    # for a cache entry no test uses (the rootless build has its own cache)
    text += "\nbuild:\n  cache: {use_image_cache: false}\n"
    (work / "verity.yml").write_text(text)
    return work / "verity.yml"

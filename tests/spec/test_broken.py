"""Broken specs: each must give exactly the one precise error expected, with its position."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import TemplateError, ValidationError
from imagecomposer.spec import Spec, validate

HEAD = """\
image:
  name: web
  base: {os: debian, version: "12"}
"""
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINq9yZDSv0RZCvg7+7mV0aZqGlXIKJE/0ha+iBf525nF"
       " admin@example")
HASH = ("$6$examplesalt0001$4KyZq9mVS10GmIho7w0ctkbW1Q4C2G3lfpKvq.L2Z.5zHoIgncmQWO5f65YSSazBUcp"
        "FiQsLzofHNv7fHHRPG0")
RSA_BODY = "AAAAB3NzaC1yc2EAAAADAQABAAABAQCf9iLkpJxmAaE1UOGL4CqP7H3v7PkXN49EZLxxYRUdAfNVfEw3"

CASES: list[tuple[str, str, str]] = [
    ("yaml-syntax", HEAD + "output: {formats: [raw, qcow2}\n",
     "web.yml:4:30: YAML syntax error: expected ',' or ']', but got '}' while parsing a flow "
     "sequence"),
    ("duplicate-key", HEAD + "disk: {size: 2GiB}\ndisk: {size: 3GiB}\n",
     "web.yml:5:1: duplicate key 'disk' (first given on line 4)"),
    ("unknown-top-level-key", HEAD + "customisations: {hostname: web01}\n",
     "web.yml:4:1: customisations: unknown field 'customisations' (did you mean "
     "'customizations'?)"),
    ("unknown-user-key", HEAD + "customizations:\n  users:\n    - name: admin\n"
     "      pasword_hash: '!'\n",
     "web.yml:7:7: customizations.users[0].pasword_hash: unknown field 'pasword_hash' "
     "(did you mean 'password_hash'?)"),
    ("plaintext-password", HEAD + "customizations:\n  users:\n    - name: admin\n"
     "      password: hunter2\n",
     "web.yml:7:7: customizations.users[0].password: plaintext passwords are refused; use "
     "password_hash with a crypt(3) hash, e.g. from `openssl passwd -6`"),
    ("ssh-key-not-base64", HEAD + "customizations:\n  users:\n    - name: admin\n"
     f"      ssh_keys:\n        - \"{KEY}\"\n        - \"ssh-ed25519 not*base64 me@host\"\n",
     "web.yml:9:11: customizations.users[0].ssh_keys[1]: not a valid OpenSSH public key "
     "(the key data is not base64)"),
    ("ssh-key-type-mismatch", HEAD + "customizations:\n  users:\n    - name: admin\n"
     f"      ssh_keys: [\"ssh-ed25519 {RSA_BODY} me@host\"]\n",
     "web.yml:7:18: customizations.users[0].ssh_keys[0]: not a valid OpenSSH public key "
     "(declared type 'ssh-ed25519' does not match the key data)"),
    ("bad-password-hash", HEAD + "customizations:\n  users:\n    - name: admin\n"
     "      password_hash: '$6$salt$tooshort'\n",
     "web.yml:7:22: customizations.users[0].password_hash: not a valid crypt(3) hash "
     "(sha512crypt, sha256crypt, yescrypt, bcrypt); use password_hash with a crypt(3) hash, "
     "e.g. from `openssl passwd -6`"),
    ("missing-image-name", "image:\n  base: {os: debian, version: '12'}\n",
     "web.yml:1:1: image: missing required field 'name'"),
    ("bootloader-enum", HEAD + "customizations: {bootloader: grub2}\n",
     "web.yml:4:30: customizations.bootloader: invalid value 'grub2': must be one of "
     "systemd-boot, grub, none (did you mean 'grub'?)"),
    ("format-enum", HEAD + "output:\n  formats: [raw, qcow3]\n",
     "web.yml:5:18: output.formats[1]: invalid value 'qcow3': must be one of raw, qcow2, vhd, "
     "vhd-fixed, vhdx, vmdk, vmdk-stream, vdi (did you mean 'qcow2'?)"),
    ("bad-size", HEAD + "disk: {size: 4GB2}\n",
     "web.yml:4:14: disk.size: invalid value '4GB2': Disk size, or 'auto' (content plus "
     "margin)."),
    ("undefined-variable", HEAD + "variables: {domain: example.org}\n"
     "customizations:\n  hostname: web01.${domian}\n",
     "web.yml:6:19: customizations.hostname: undefined variable 'domian' (did you mean "
     "'domain'?)"),
    ("install-not-a-list", HEAD + "customizations:\n  packages: {install: nginx}\n",
     "web.yml:5:23: customizations.packages.install: must be a list, not a string"),
    ("hostname-pattern", HEAD + "customizations: {hostname: web_01}\n",
     "web.yml:4:28: customizations.hostname: invalid value 'web_01' (for example 'host')"),
    ("unknown-template", HEAD + "extends: production-servr\n",
     "web.yml:4:10: extends: unknown template 'production-servr' (did you mean "
     "'production-server'?); built-in templates: debian-12/development-environment, "
     "debian-12/minimal-system, debian-12/production-server"),
    # --- semantic checks (validate stage) ---
    ("provider-not-configured", "image:\n  name: web\n  base: {os: ubuntu, version: '22.04'}\n",
     "web.yml:3:14: image.base.os: Provider 'ubuntu' is not configured in the global "
     "configuration (configured: debian)"),
    ("missing-file", HEAD + "customizations:\n  files:\n"
     "    - {source: ./files/sshd_config, destination: /etc/ssh/sshd_config}\n",
     "web.yml:6:16: customizations.files[0].source: Missing required file "
     "'./files/sshd_config' referenced in build spec"),
    ("gzip-vhd", HEAD + "output:\n  formats: [vhd]\n  compression: gzip\n",
     "web.yml:6:16: output.compression: Invalid combination of compression 'gzip' with format "
     "'vhd': VHD is consumed in place (footer at the end of the file); use compression: none "
     "or another format"),
    ("systemd-boot-mbr", HEAD + "disk:\n  partition_table: mbr\n",
     "web.yml:1:1: customizations.bootloader: Invalid combination of bootloader "
     "'systemd-boot' with partition table 'mbr': systemd-boot boots with UEFI and needs gpt"),
    ("grub-gpt-without-esp", HEAD + "customizations: {bootloader: grub}\ndisk:\n  partitions:\n"
     "    - {name: root, type: root, size: rest, filesystem: ext4, mountpoint: /}\n",
     "web.yml:7:5: disk.partitions: bootloader 'grub' on gpt boots with UEFI and needs an ESP "
     "partition (type: esp, filesystem: vfat)"),
    ("read-only-root-xfs", HEAD + "customizations:\n  security: {read_only_root: true}\ndisk:\n"
     "  partitions:\n    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}\n"
     "    - {name: root, type: root, size: rest, filesystem: xfs}\n",
     "web.yml:9:56: disk.partitions[1].filesystem: Invalid combination of read_only_root with "
     "root filesystem 'xfs': use one of ext4, erofs, squashfs"),
    ("read-only-root-mbr", HEAD + "customizations:\n  bootloader: grub\n"
     "  security: {read_only_root: true}\ndisk: {partition_table: mbr}\n",
     "web.yml:6:30: customizations.security.read_only_root: Invalid combination of "
     "read_only_root with partition table 'mbr': dm-verity needs gpt"),
    ("squashfs-root-writable", HEAD + "disk:\n  partitions:\n"
     "    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}\n"
     "    - {name: root, type: root, size: rest, filesystem: squashfs}\n",
     "web.yml:7:56: disk.partitions[1].filesystem: a squashfs root is read-only: set "
     "customizations.security.read_only_root: true"),
    ("esp-not-vfat", HEAD + "disk:\n  partitions:\n"
     "    - {name: esp, type: esp, size: 512MiB, filesystem: ext4}\n"
     "    - {name: root, type: root, size: rest}\n",
     "web.yml:6:56: disk.partitions[0].filesystem: the ESP must be vfat, not ext4"),
    ("two-roots", HEAD + "disk:\n  partitions:\n"
     "    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}\n"
     "    - {name: root, type: root, size: 1GiB}\n    - {name: root2, type: root, size: rest}\n",
     "web.yml:6:5: disk.partitions: needs exactly one partition of type root, found 2"),
    ("rest-not-last", HEAD + "disk:\n  partitions:\n"
     "    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}\n"
     "    - {name: root, type: root, size: rest}\n"
     "    - {name: home, type: home, size: 1GiB, mountpoint: /home}\n",
     "web.yml:7:38: disk.partitions[1].size: only the last partition may have size: rest"),
    ("partitions-too-big", HEAD + "disk:\n  size: 2GiB\n  partitions:\n"
     "    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}\n"
     "    - {name: root, type: root, size: 2GiB}\n",
     "web.yml:5:9: disk.size: partitions need 2562MiB (including 2MiB for the partition table) "
     "but disk.size is 2GiB"),
    ("swap-not-swap", HEAD + "disk:\n  partitions:\n"
     "    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}\n"
     "    - {name: swap, type: swap, size: 1GiB, filesystem: ext4}\n"
     "    - {name: root, type: root, size: rest}\n",
     "web.yml:7:56: disk.partitions[1].filesystem: a swap partition needs filesystem: swap, "
     "not ext4"),
    ("duplicate-mountpoint", HEAD + "disk:\n  partitions:\n"
     "    - {name: esp, type: esp, size: 512MiB, filesystem: vfat, mountpoint: /boot}\n"
     "    - {name: boot, type: xbootldr, size: 512MiB, filesystem: ext4, mountpoint: /boot}\n"
     "    - {name: root, type: root, size: rest}\n",
     "web.yml:7:80: disk.partitions[1].mountpoint: duplicate partition mountpoint '/boot'"),
    ("duplicate-user", HEAD + "customizations:\n  users:\n    - {name: admin}\n"
     "    - {name: admin, groups: [sudo]}\n",
     "web.yml:7:14: customizations.users[1].name: duplicate user name 'admin'"),
    ("relative-destination", HEAD + "customizations:\n  files:\n"
     "    - {content: hello, destination: etc/motd}\n",
     "web.yml:6:37: customizations.files[0].destination: must be an absolute path inside the "
     "image, like /etc/motd"),
    ("service-enabled-and-disabled", HEAD + "customizations:\n  services:\n"
     "    enabled: [nginx, ssh]\n    disabled: [ssh]\n",
     "web.yml:6:22: customizations.services.enabled[1]: service 'ssh' is both enabled and "
     "disabled"),
    ("secure-boot-bootloader-none", HEAD + "customizations:\n  bootloader: none\n  security:\n"
     "    secure_boot: {key: ./db.key, cert: ./db.crt}\n",
     "web.yml:7:18: customizations.security.secure_boot: Invalid combination of secure_boot "
     "with bootloader 'none': Secure Boot needs systemd-boot or grub"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in CASES],
                         ids=[name for name, _, _ in CASES])
def test_broken_spec_gives_one_precise_error(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "db.key").write_text("key")
    (tmp_path / "db.crt").write_text("cert")
    with pytest.raises(ValidationError) as caught:
        spec = Spec.from_text(text, name="web.yml", base_dir=tmp_path)
        validate(spec, Config())
    problems = [str(p) for p in caught.value.problems]
    assert problems == [expected]
    assert str(caught.value).startswith("Validation error: 1 problem\n")


def test_there_are_at_least_25_cases() -> None:
    assert len(CASES) >= 25


def test_unknown_template_is_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError):
        Spec.from_text(HEAD + "extends: nothing-like-this\n", name="web.yml", base_dir=tmp_path)


def test_all_problems_are_collected(tmp_path: Path) -> None:
    text = HEAD + ("customizations:\n  bootloader: grub2\n  users:\n    - name: admin\n"
                   "      password: secret-value\n      shel: /bin/sh\n"
                   "output: {formats: [qcow3], compresion: zstd}\n")
    with pytest.raises(ValidationError) as caught:
        Spec.from_text(text, name="web.yml", base_dir=tmp_path)
    lines = [str(p) for p in caught.value.problems]
    assert [line.split(": ")[0] for line in lines] == [
        "web.yml:5:15", "web.yml:8:7", "web.yml:9:7", "web.yml:10:20", "web.yml:10:28"]
    assert "secret-value" not in str(caught.value)


def test_secrets_never_in_messages(tmp_path: Path) -> None:
    text = HEAD + "customizations:\n  root_password_hash: TopSecretPass\n"
    with pytest.raises(ValidationError) as caught:
        Spec.from_text(text, name="web.yml", base_dir=tmp_path)
    assert "TopSecretPass" not in str(caught.value)
    assert "looks like a plaintext password" in str(caught.value)


def test_empty_and_non_mapping_specs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="the build spec is empty"):
        Spec.from_text("", name="web.yml")
    with pytest.raises(ValidationError, match=r"web\.yml:1:1: a build spec must be a mapping"):
        Spec.from_text("- a\n- b\n", name="web.yml")


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="build spec not found"):
        Spec.load(tmp_path / "nope.yml")

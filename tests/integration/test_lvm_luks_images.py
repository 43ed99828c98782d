"""LVM2 and LUKS2 layouts on Debian 12 (initramfs-tools), built from the real archive and
booted under QEMU to a login prompt:

* ``luks``: examples/debian-12-luks.yml, root on a LUKS2 partition; the test types the
  passphrase when the initramfs asks for it on the serial console;
* ``stacked``: root on LUKS2 on a logical volume (its key file embedded in the initramfs:
  a test-only convenience, no typing), /var and swap on plain logical volumes of the same
  volume group (activated by the initramfs: lvm2's udev rules), and /home on LVM on LUKS2
  (a second partition, its key file in the encrypted root), opened by systemd-cryptsetup
  after the root is mounted and activated by udev.

examples/debian-12-lvm.yml (root, /var and swap on plain logical volumes) is not built
here: ``stacked`` holds the same volume group layout with its root encrypted, so the
same initramfs path (activate the group, then mount what it holds) boots it; the example
is validated by tests/spec/test_load.py, and a disk of plain logical volumes like it is
written and read back with lvm2's tools by tests/disk/test_lvm.py (~2 min of CI saved).

The two specs request the same packages (lvm2 and cryptsetup-initramfs listed explicitly,
which the profile adds anyway for the layouts that need them) so they share one lock: the
installed tree is restored from the session's tree cache for the second image.
Offline checks use lvm2's pvck and cryptsetup's luksDump on the image file; a one-shot unit
in each image reports what is mounted from where on the console before the login prompt.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imagecomposer.boot import boot, read_file
from imagecomposer.config.model import Config
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec import Spec

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.boot, pytest.mark.slow]

EXAMPLES = Path(__file__).parents[2] / "examples"
PACKAGES = "    install: [systemd-sysv, udev, dbus, sudo]\n"
SHARED = "    install: [systemd-sysv, udev, dbus, sudo, lvm2, cryptsetup-initramfs]\n"
PASSPHRASE = "imagecomposer"  # examples/files/luks-passphrase
PROMPT = "Please unlock disk root_crypt:"

CHECK_SCRIPT = """#!/bin/sh
# imagecomposer test: report the storage stack on the console
for m in / /var /home; do
    echo "STACK-CHECK mount $m $(findmnt -no SOURCE,FSTYPE "$m")"
done
echo "STACK-CHECK swaps $(tail -n +2 /proc/swaps | wc -l)"
echo "STACK-CHECK lvs $(lvm lvs --noheadings --separator / -o vg_name,lv_name,lv_active \
    2>/dev/null | tr -d ' ' | sort | tr '\\n' ' ')"
for d in /dev/mapper/*_crypt; do
    [ -e "$d" ] || continue
    echo "STACK-CHECK crypt $d $(cryptsetup status "${d##*/}" | sed -n 's/^ *type: *//p')"
done
touch /var/tmp/probe /home/probe && echo "STACK-CHECK writable"
"""
CHECK_UNIT = """[Unit]
Description=imagecomposer test: report the storage stack
After=local-fs.target swap.target
Before=getty.target serial-getty@ttyS0.service

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/usr/local/sbin/stack-check

[Install]
WantedBy=multi-user.target
"""

# The volumes mounted after the root (activated by udev's lvm2 rules; /home's group also
# needs systemd-cryptsetup first) wait up to 300 s for their devices instead of systemd's
# 90: under TCG on a loaded 2-core host, udev's coldplug once took longer than 90 s, and
# /home timed out (the boot ended in emergency mode).
STACKED = """image:
  name: debian-12-stacked
  version: "1.0.0"
  base: {os: debian, version: "12", type: minimal, arch: x86_64}
customizations:
  hostname: debian-stacked
  packages:
    install: [systemd-sysv, udev, dbus, sudo, lvm2, cryptsetup-initramfs]
    recommends: false
  users:
    - name: admin
      groups: [sudo]
      password_hash: "@HASH@"
  network:
    interfaces: [{match: "en*", dhcp4: true}]
  services:
    enabled: [systemd-networkd]
  kernel: {serial_console: true}
  bootloader: systemd-boot
disk:
  size: 2GiB
  partitions:
    - {name: esp, type: esp, size: 256MiB, filesystem: vfat, mountpoint: /boot/efi}
    - name: system
      type: lvm
      size: 1400MiB
      volume_group:
        name: sys
        logical_volumes:
          - name: root
            size: 1200MiB
            mountpoint: /
            encryption: {type: luks2, key_file: ./root.key, embed_key: true,
                         pbkdf_iterations: 4}
          - {name: swap, size: 64MiB, filesystem: swap, mount_options: "@WAIT@"}
          - {name: var, size: rest, mountpoint: /var, mount_options: "@WAIT@"}
    - name: vault
      type: lvm
      size: rest
      encryption: {type: luks2, key_file: ./vault.key, embed_key: true, pbkdf_iterations: 4}
      volume_group:
        name: data
        logical_volumes:
          - {name: home, size: rest, mountpoint: /home, mount_options: "@WAIT@"}
output: {formats: [raw]}
""".replace("@WAIT@", "x-systemd.device-timeout=300").replace(
    "@HASH@", "$6$examplesalt0001$4KyZq9mVS10GmIho7w0ctkbW1Q4C2G3lfpKvq.L2Z.5zHoIgn"
              "cmQWO5f65YSSazBUcpFiQsLzofHNv7fHHRPG0")


def with_check_unit(text: str, work: Path) -> str:
    (work / "stack-check.service").write_text(CHECK_UNIT)
    (work / "stack-check").write_text(CHECK_SCRIPT)
    files = ("  files:\n    - {source: ./stack-check.service, destination: "
             "/etc/systemd/system/stack-check.service, mode: \"0644\"}\n"
             "    - {source: ./stack-check, destination: /usr/local/sbin/stack-check, "
             "mode: \"0755\"}\n")
    services = "  services:\n    enabled: [systemd-networkd]\n"
    assert services in text
    return text.replace(services, files + "  services:\n    enabled: [systemd-networkd, "
                        "stack-check]\n")


def build(config: Config, work: Path, name: str, text: str) -> tuple[Path, dict[str, Any]]:
    spec_path = work / f"{name}.yml"
    spec_path.write_text(with_check_unit(text.replace(PACKAGES, SHARED), work))
    out = work / "out"
    ImagePipeline(config).build(Spec.load(spec_path), BuildOptions(output_dir=out))
    manifest = json.loads((out / "manifest.json").read_text())
    image = next(out.glob("*.raw"))
    return image, manifest["layout"]


def example(name: str, work: Path) -> str:
    text = (EXAMPLES / f"{name}.yml").read_text()
    (work / "files").mkdir(exist_ok=True)
    (work / "files/luks-passphrase").write_bytes(
        (EXAMPLES / "files/luks-passphrase").read_bytes())
    return text


def piece(image: Path, offset: int, size: int, target: Path) -> Path:
    subprocess.run(["dd", f"if={image}", f"of={target}", "bs=1M", "iflag=skip_bytes,count_bytes",
                    f"skip={offset}", f"count={size}", "conv=sparse", "status=none"], check=True)
    return target


def partition(layout: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in layout["partitions"] if p["name"] == name)
    return found


def sh(*argv: str | Path) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          env={"LVM_SUPPRESS_FD_WARNINGS": "1", "PATH": "/usr/sbin:/usr/bin:"
                               "/sbin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def console_text(path: Path) -> str:
    return path.read_text(errors="replace").replace("\r", "")


@pytest.fixture(scope="module")
def luks_image(config: Config, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[Path, dict[str, Any]]:
    work = tmp_path_factory.mktemp("luks")
    return build(config, work, "luks", example("debian-12-luks", work))


def test_root_on_luks2_boots_with_the_typed_passphrase(
        luks_image: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    image, layout = luks_image
    root = partition(layout, "root")
    enc = root["encryption"]
    dump = sh("cryptsetup", "luksDump", piece(image, root["start"], root["size"],
                                              tmp_path / "root.luks"))
    assert re.search(rf"UUID:\s*{enc['uuid']}", dump) and re.search(r"PBKDF:\s*argon2id", dump)
    esp_entries = read_file(image, "esp", "/loader/entries.srel")  # the ESP is plain FAT
    assert esp_entries == b"type1\n"
    console = tmp_path / "console.log"
    boot(image, timeout=600, console_log=console, markers=["STACK-CHECK writable"],
         console_input=[(PROMPT, PASSPHRASE)])
    out = console_text(console)
    assert PROMPT in out and "root_crypt: set up successfully" in out
    assert re.search(r"STACK-CHECK mount / /dev/mapper/root_crypt +ext4", out), out[-3000:]
    assert "STACK-CHECK crypt /dev/mapper/root_crypt LUKS2" in out
    assert "debian-luks login:" in out


@pytest.fixture(scope="module")
def stacked_image(config: Config, tmp_path_factory: pytest.TempPathFactory
                  ) -> tuple[Path, dict[str, Any]]:
    work = tmp_path_factory.mktemp("stacked")
    (work / "root.key").write_bytes(bytes(range(256)))
    (work / "vault.key").write_bytes(bytes(reversed(range(256))))
    return build(config, work, "stacked", STACKED)


def test_luks2_on_lvm_and_lvm_on_luks2_boot(stacked_image: tuple[Path, dict[str, Any]],
                                            tmp_path: Path) -> None:
    image, layout = stacked_image
    system, vault = partition(layout, "system"), partition(layout, "vault")
    root = system["volume_group"]["logical_volumes"][0]
    assert root["name"] == "root" and root["encryption"]["initramfs"]
    assert not vault["encryption"]["initramfs"]
    text = sh("pvck", "--dump", "metadata", piece(image, system["start"], 4 << 20,
                                                  tmp_path / "pv.img"))
    assert "CHECK" not in text and "vgname sys seqno 1" in text
    dump = sh("cryptsetup", "luksDump", piece(image, system["start"] + root["offset"],
                                              root["size"], tmp_path / "root.luks"))
    assert re.search(rf"UUID:\s*{root['encryption']['uuid']}", dump)
    dump = sh("cryptsetup", "luksDump", piece(image, vault["start"], vault["size"],
                                              tmp_path / "vault.luks"))
    assert re.search(rf"UUID:\s*{vault['encryption']['uuid']}", dump)
    console = tmp_path / "console.log"
    boot(image, timeout=600, console_log=console, markers=["STACK-CHECK writable"])
    out = console_text(console)
    assert "root_crypt: set up successfully" in out and PROMPT not in out
    assert re.search(r"STACK-CHECK mount / /dev/mapper/root_crypt +ext4", out), out[-3000:]
    assert re.search(r"STACK-CHECK mount /var /dev/mapper/sys-var +ext4", out)
    assert re.search(r"STACK-CHECK mount /home /dev/mapper/data-home +ext4", out)
    assert "STACK-CHECK swaps 1" in out
    assert ("STACK-CHECK lvs data/home/active sys/root/active sys/swap/active "
            "sys/var/active") in out
    assert "STACK-CHECK crypt /dev/mapper/root_crypt LUKS2" in out
    assert "STACK-CHECK crypt /dev/mapper/vault_crypt LUKS2" in out
    assert "debian-stacked login:" in out

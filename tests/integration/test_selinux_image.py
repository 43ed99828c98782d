"""SELinux on Debian 12 is real (issue 12): the example image with
``security.selinux: permissive`` installs selinux-basics and selinux-policy-default, is
labelled at build time (its files carry their policy labels, read offline; not
``unlabeled_t``: no first-boot relabel) and its boot entries ask for permissive mode. The
same image, its boot entries switched to ``enforcing=1`` (the kernel command line wins over
``/etc/selinux/config`` when the policy is loaded), boots to a login prompt enforcing:
Debian's default policy and the build-time labels are enough for ``selinux: enforcing``
(a permissive boot would check the same labels less strictly).

One build and one boot (about 2.5 minutes).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from imagecomposer.boot import boot, read_file
from imagecomposer.compose.disk.inspect import find_partition, list_dir
from imagecomposer.config.model import Config
from imagecomposer.lock import Lock
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec import Spec

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.boot, pytest.mark.slow]

EXAMPLES = Path(__file__).parents[2] / "examples"

# prints the SELinux state on the serial console before the login prompt
CHECK_UNIT = """[Unit]
Description=imagecomposer test: report SELinux
After=local-fs.target
Before=getty.target serial-getty@ttyS0.service

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/sh -c 'echo "SELINUX-CHECK mode: $(getenforce)"; \\
  echo "SELINUX-CHECK passwd: $(stat -c %%C /etc/passwd)"; \\
  echo "SELINUX-CHECK sshd: $(stat -c %%C /usr/sbin/sshd)"; \\
  echo "SELINUX-CHECK init: $(cat /proc/1/attr/current)"; \\
  echo "SELINUX-CHECK done"'

[Install]
WantedBy=multi-user.target
"""


@pytest.fixture(scope="module")
def selinux_image(config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("selinux")
    shutil.copytree(EXAMPLES / "files", work / "files")
    (work / "files/selinux-check.service").write_text(CHECK_UNIT)
    text = (EXAMPLES / "debian-12-minimal.yml").read_text()
    text = text.replace("    - {source: ./files/motd, destination: /etc/motd, mode: \"0644\"}\n",
                        "    - {source: ./files/motd, destination: /etc/motd, mode: \"0644\"}\n"
                        "    - {source: ./files/selinux-check.service, destination: "
                        "/etc/systemd/system/selinux-check.service, mode: \"0644\"}\n")
    text = text.replace("    enabled: [systemd-networkd]\n",
                        "    enabled: [systemd-networkd, selinux-check]\n")
    text = text.replace("  bootloader: systemd-boot\n",
                        "  bootloader: systemd-boot\n  security: {selinux: permissive}\n")
    text = text.replace("  formats: [raw, qcow2]\n", "  formats: [raw]\n")
    assert "selinux-check]" in text and "selinux: permissive" in text
    (work / "selinux.yml").write_text(text)
    out = work / "out"
    ImagePipeline(config).build(Spec.load(work / "selinux.yml"), BuildOptions(output_dir=out))
    return out


def label(image: Path, path: str) -> str:
    """The ``security.selinux`` extended attribute of ``path`` in the image's root
    filesystem, read by e2fsprogs' debugfs from the image file."""
    root = find_partition(image, "root")
    done = subprocess.run(["debugfs", "-R", f"ea_get -V {path} security.selinux",
                           f"{image}?offset={root.start}"], capture_output=True, text=True,
                          check=True)
    return done.stdout.strip().rstrip("\x00")


def test_selinux_image_is_labelled_for_permissive_mode(selinux_image: Path) -> None:
    """What ``selinux: permissive`` puts into the image, read offline: the policy packages,
    /etc/selinux/config, the kernel command line of every boot entry, the files' labels.
    (The boot, enforcing, is the next test: a stricter check of the same labels.)"""
    names = {p.name for p in Lock.read(selinux_image / "debian-12-minimal.lock.json").packages}
    assert {"selinux-basics", "selinux-policy-default"} <= names
    image = selinux_image / "debian-12-minimal.raw"
    config = read_file(image, "root", "/etc/selinux/config").decode()
    assert re.search(r"^SELINUX=permissive$", config, re.M), config
    assert re.search(r"^SELINUXTYPE=default$", config, re.M), config
    entries = [read_file(image, "esp", f"/loader/entries/{name}").decode()
               for name in list_dir(image, "esp", "/loader/entries")]
    assert entries and all("security=selinux" in e and "enforcing=0" in e for e in entries)
    assert label(image, "/etc/passwd").startswith("system_u:object_r:etc_t:"), \
        label(image, "/etc/passwd")
    assert label(image, "/usr/sbin/sshd").startswith("system_u:object_r:sshd_exec_t:")
    assert label(image, "/usr/lib/systemd/systemd").startswith(
        "system_u:object_r:init_exec_t:")


def switch_boot_entries(image: Path, old: str, new: str, scratch: Path) -> list[str]:
    """Replace ``old`` by ``new`` in every systemd-boot entry on the image's ESP (mtools, in
    place); the new entries."""
    esp = find_partition(image, "esp")
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    entries = []
    for name in list_dir(image, "esp", "/loader/entries"):
        path = f"/loader/entries/{name}"
        text = read_file(image, "esp", path).decode()
        assert old in text, text
        local = scratch / name
        local.write_text(text.replace(old, new))
        subprocess.run(["mcopy", "-o", "-i", f"{image}@@{esp.start}", str(local), f"::{path}"],
                       check=True, env=env, capture_output=True)
        entries.append(read_file(image, "esp", path).decode())
    return entries


def test_selinux_image_boots_enforcing(selinux_image: Path, tmp_path: Path) -> None:
    """The permissive build's image with ``enforcing=1`` on its kernel command line: the
    policy is loaded enforcing, the boot reaches the login prompt, the labels are the same."""
    image = tmp_path / "enforcing.raw"
    subprocess.run(["cp", "--sparse=always", "--reflink=auto",
                    str(selinux_image / "debian-12-minimal.raw"), str(image)], check=True)
    entries = switch_boot_entries(image, "enforcing=0", "enforcing=1", tmp_path)
    assert entries and all("security=selinux" in e and "enforcing=1" in e for e in entries)
    console = tmp_path / "console.log"
    result = boot(image, timeout=300, console_log=console, markers=["SELINUX-CHECK done"])
    text = console.read_text(errors="replace")
    assert "enforcing=1" in text and "enforcing=0" not in text
    assert "debian-minimal login:" in text, result.console_tail
    assert "SELINUX-CHECK mode: Enforcing" in text, text[-3000:]
    assert re.search(r"SELINUX-CHECK init: system_u:system_r:init_t", text)
    assert re.search(r"SELINUX-CHECK passwd: system_u:object_r:etc_t", text), text[-3000:]
    assert re.search(r"SELINUX-CHECK sshd: system_u:object_r:sshd_exec_t", text)
    assert "unlabeled_t" not in text
    denials = [line.strip() for line in text.splitlines() if "avc:  denied" in line]
    print(f"\nenforcing boot {result.seconds:.1f} s ({result.accelerator}); "
          f"{len(denials)} AVC denials on the console", *denials[:10], sep="\n")

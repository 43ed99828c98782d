"""inspect and compare on images the pipeline builds: the minimal and server examples (raw
and qcow2), built once per session and shared with the acceptance test, so these tests add
no build. The server example differs from the minimal one by packages (unattended-upgrades,
nano removed), files (the sshd drop-in), the hostname and the disk size. (A variant of the
minimal spec with one package and one file more cost 269 s more on the loaded 2-core dev
host: the lock changes, so the installed-tree cache misses; the synthetic images of
tests/inspect cover the one-package-one-file case.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.inspect import Image, compare
from imagecomposer.spec import Spec
from tests.integration.conftest import CliBuild

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow]

ExampleBuild = Callable[[str, Path | None], tuple[Spec, CliBuild, Path]]
NAME = "debian-12-minimal"


@pytest.fixture(scope="module")
def minimal(example_build: ExampleBuild) -> tuple[Spec, Path]:
    spec, _, out = example_build(NAME, None)
    return spec, out


@pytest.fixture(scope="module")
def server(example_build: ExampleBuild) -> tuple[Spec, Path]:
    spec, _, out = example_build("debian-12-server", None)
    return spec, out


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_inspect_holds_the_spec(minimal: tuple[Spec, Path], fmt: str, tmp_path: Path) -> None:
    spec, out = minimal
    c = spec.customizations
    with Image.open(out / f"{NAME}.{fmt}") as image:
        report = image.inspect(hash=True)
        sboms = image.extract_sboms(tmp_path)
    assert report.image.format == fmt and report.problems == ()
    assert report.hostname == c.hostname and report.timezone == c.timezone
    assert report.os is not None and report.os.id == "debian" and report.os.version_id == "12"
    users = {u.name: u for u in report.users}
    for user in c.users:
        assert users[user.name].shell == user.shell and users[user.name].password == "set"
        assert set(user.groups) <= set(users[user.name].groups)
    assert "systemd-networkd.service" in report.services.enabled
    names = {p.name for p in report.packages.items}
    assert report.packages.manager == "dpkg" and set(c.packages.install) <= names
    assert report.bootloader.type == "systemd-boot"
    assert all(c.kernel.cmdline in line for line in report.kernel_cmdline)
    assert report.kernels and all(k.modules for k in report.kernels)
    parts = {p.name: p for p in report.partition_table.partitions}
    assert parts["root"].filesystem is not None and parts["root"].filesystem.mountpoint == "/"
    assert report.sidecar is not None
    assert report.sidecar.hash_matches is True and report.sidecar.lock_matches is True
    kernels = [b for b in report.secure_boot if b.path.endswith("/linux")]
    assert kernels and all(b.signed and b.verified for b in kernels)  # Debian-signed kernel
    assert {p.name for p in sboms} == {f"{NAME}.spdx.json", f"{NAME}.cdx.json"}


def test_raw_and_qcow2_are_identical(minimal: tuple[Spec, Path]) -> None:
    _, out = minimal
    report = compare(out / f"{NAME}.raw", out / f"{NAME}.qcow2", mode="files")
    assert report.verdict == "identical"


def test_compare_two_builds(minimal: tuple[Spec, Path], server: tuple[Spec, Path]) -> None:
    (_, out), (server_spec, server_out) = minimal, server
    a, b = out / f"{NAME}.raw", server_out / "debian-12-server.qcow2"
    report = compare(a, b, mode="full")
    assert report.verdict == "different" and (report.a.format, report.b.format) == (
        "raw", "qcow2")
    assert report.packages is not None
    added = {p.name for p in report.packages.added}
    assert "unattended-upgrades" in added
    assert "nano" not in {p.name for p in report.packages.added}
    assert report.config is not None
    config = {c.field: c for c in report.config}
    assert config["hostname"].b == server_spec.customizations.hostname
    assert "partitions" in config  # 2 GiB against 3 GiB
    assert report.files is not None
    root = next(f for f in report.files if f.mountpoint == "/")
    assert "/usr/bin/unattended-upgrade" in {r.path for r in root.added}
    changed = {c.path: c.fields for c in root.changed}
    assert "sha256" in changed["/etc/hostname"]
    assert "/etc/motd" not in changed and "/usr/bin/bash" not in changed
    for record in (*root.added, *(c.b for c in root.changed)):
        assert record.kind != "file" or record.sha256 is not None
    # the SBOM files next to the images compare the same way
    sboms = compare(out / f"{NAME}.spdx.json", server_out / "debian-12-server.cdx.json")
    assert sboms.packages is not None
    assert "unattended-upgrades" in {p.name for p in sboms.packages.added}

"""inspect and compare on images the pipeline builds: the minimal example (raw and qcow2,
built once per session, shared with the acceptance test) and a variant of it that adds a
package and a file (it reuses the session's package cache)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.inspect import Image, compare
from imagecomposer.pipeline.build import BuildReport
from imagecomposer.spec import Spec

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow]

EXAMPLES = Path(__file__).parents[2] / "examples"
ExampleBuild = Callable[[str, Path | None], tuple[Spec, BuildReport, Path]]
NAME = "debian-12-minimal"


@pytest.fixture(scope="module")
def minimal(example_build: ExampleBuild) -> tuple[Spec, Path]:
    spec, _, out = example_build(NAME, None)
    return spec, out


@pytest.fixture(scope="module")
def variant(example_build: ExampleBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("variant")
    shutil.copytree(EXAMPLES / "files", work / "files")
    text = (EXAMPLES / f"{NAME}.yml").read_text()
    text = text.replace("sudo, ca-certificates]", "sudo, ca-certificates, less]")
    text = text.replace('    - {source: ./files/motd, destination: /etc/motd, mode: "0644"}\n',
                        '    - {source: ./files/motd, destination: /etc/motd, mode: "0644"}\n'
                        '    - {source: ./files/motd, destination: /etc/inspect-marker, '
                        'mode: "0600"}\n')
    assert "less]" in text and "inspect-marker" in text
    (work / "variant.yml").write_text(text)
    _, _, out = example_build("variant", work / "variant.yml")
    return out / f"{NAME}.qcow2"


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


def test_compare_two_builds(minimal: tuple[Spec, Path], variant: Path) -> None:
    _, out = minimal
    report = compare(out / f"{NAME}.raw", variant, mode="full")
    assert report.verdict == "different"
    assert report.packages is not None
    assert [p.name for p in report.packages.added] == ["less"]
    assert not report.packages.removed and not report.packages.changed
    assert report.files is not None
    root = next(f for f in report.files if f.mountpoint == "/")
    added = {r.path: r for r in root.added}
    assert {"/etc/inspect-marker", "/usr/bin/less"} <= set(added)
    assert added["/etc/inspect-marker"].mode == 0o600
    assert not root.removed
    changed = {c.path for c in root.changed}
    assert "/var/lib/dpkg/status" in changed and "/usr/bin/bash" not in changed
    # the SBOM files of the outputs compare the same way
    sboms = compare(out / f"{NAME}.spdx.json", variant.parent / f"{NAME}.cdx.json")
    assert sboms.packages is not None and [p.name for p in sboms.packages.added] == ["less"]

"""The acceptance test of the whole pipeline: the example specs, built from the real Debian
archive (the mirror the host's apt sources name), boot to a login prompt in QEMU and hold
what their spec asked for; an identical rebuild is an image cache hit.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.boot import boot, file_info, list_dir, read_file
from imagecomposer.config.model import Config
from imagecomposer.pipeline.build import BuildReport, ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec import Spec

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.boot, pytest.mark.slow]

EXAMPLES = Path(__file__).parents[2] / "examples"
ExampleBuild = Callable[[str, Path | None], tuple[Spec, BuildReport, Path]]


def build(config: Config, name: str, out: Path) -> tuple[Spec, BuildReport]:
    spec = Spec.load(EXAMPLES / f"{name}.yml")
    report = ImagePipeline(config).build(spec, BuildOptions(output_dir=out))
    return spec, report


def check_inside(spec: Spec, image: Path) -> None:
    c = spec.customizations
    assert read_file(image, "root", "/etc/hostname").decode().strip() == c.hostname
    passwd = read_file(image, "root", "/etc/passwd").decode()
    group = read_file(image, "root", "/etc/group").decode()
    for user in c.users:
        entry = next(line for line in passwd.splitlines() if line.startswith(f"{user.name}:"))
        uid = int(entry.split(":")[2])
        assert entry.endswith(f":{user.shell}")
        for name in user.groups:
            members = next(g for g in group.splitlines() if g.startswith(f"{name}:"))
            assert user.name in members.split(":")[3].split(",")
        keys = read_file(image, "root", f"/home/{user.name}/.ssh/authorized_keys").decode()
        assert all(k in keys for k in user.ssh_keys)
        info = file_info(image, "root", f"/home/{user.name}/.ssh/authorized_keys")
        assert (stat.S_IMODE(info.mode), info.uid) == (0o600, uid)
        shadow = read_file(image, "root", "/etc/shadow").decode()
        assert f"{user.name}:{user.password_hash}:" in shadow
    for f in c.files:
        assert f.source is not None
        assert read_file(image, "root", f.destination) == f.source.read_bytes()
    wants = list_dir(image, "root", "/etc/systemd/system/multi-user.target.wants")
    for service in c.services.enabled:
        unit = service if "." in service else f"{service}.service"
        assert unit in wants, f"{unit} is not enabled: {wants}"
    status = read_file(image, "root", "/var/lib/dpkg/status").decode()
    installed = {block.split("\n", 1)[0].removeprefix("Package: ")
                 for block in status.split("\n\n") if "Status: install ok installed" in block}
    for name in c.packages.install:
        assert name in installed
    for name in c.packages.remove:
        assert name not in installed
    sboms = list_dir(image, "root", "/usr/share/sbom")
    assert f"{spec.image.name}.spdx.json" in sboms
    assert "loader.conf" in list_dir(image, "esp", "/loader")


@pytest.mark.parametrize("name", ["debian-12-minimal", "debian-12-server"])
def test_example_image_builds_boots_and_holds_the_spec(config: Config, tmp_path: Path,
                                                       example_build: ExampleBuild,
                                                       name: str) -> None:
    spec, report, out = example_build(name, None)
    assert [o.status for o in report.run.outcomes] == ["ran"] * 6
    image = out / f"{name}.raw"
    check_inside(spec, image)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == name
    assert {a["format"] for a in manifest["artifacts"]} >= {"raw", "qcow2"}

    result = boot(image, timeout=300, console_log=tmp_path / "console.log")
    console = (tmp_path / "console.log").read_text(errors="replace")
    assert f"{spec.customizations.hostname} login:" in console, result.console_tail

    # The same spec again: every stage up to date, then the image cache restores outputs.
    _, again = build(config, name, tmp_path / "again")
    assert again.image_cache_hit
    assert {o.status for o in again.run.outcomes} == {"skipped"}
    assert (tmp_path / "again" / f"{name}.raw").stat().st_size == image.stat().st_size

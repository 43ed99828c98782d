"""Templates: built-ins, files, merge rules, cycles and depth."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import TemplateError
from imagecomposer.spec import Spec, builtin_templates, check
from imagecomposer.spec.templates import MAX_DEPTH

BASE = "image:\n  name: web\n  base: {os: debian, version: '12'}\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", builtin_templates())
def test_every_builtin_template_renders_and_validates(name: str) -> None:
    profile = name.split("/")[0]
    os_name, version = profile.split("-", 1)
    spec = Spec.from_text(f"image: {{name: t, base: {{os: {os_name}, version: '{version}'}}}}\n"
                          f"extends: {name}\n")
    config = Config()
    if os_name not in config.providers:
        config = Config(providers={**config.providers, os_name: config.providers["debian"]})
    report = check(spec, config)
    assert report.errors == ()
    assert spec.customizations.packages.install
    assert spec.image.base.os == os_name


def test_builtin_templates_cover_the_seed_patterns() -> None:
    names = builtin_templates()
    for profile in ("debian-12", "ubuntu-22.04"):
        for pattern in ("minimal-system", "development-environment", "production-server"):
            assert f"{profile}/{pattern}" in names


def test_bare_template_name_uses_the_spec_profile() -> None:
    spec = Spec.from_text(BASE + "extends: production-server\n")
    assert spec.image.base.type == "server"
    assert "fail2ban" in spec.customizations.packages.install
    assert spec.disk.size == 4 * 1024**3


def test_template_without_base_needs_a_profile() -> None:
    with pytest.raises(TemplateError, match=r"needs image\.base"):
        Spec.from_text("image: {name: web}\nextends: minimal-system\n", name="web.yml")


def test_spec_may_take_its_base_from_the_template() -> None:
    spec = Spec.from_text("image: {name: web}\nextends: debian-12/minimal-system\n")
    assert (spec.image.base.os, spec.image.base.version) == ("debian", "12")


def test_merge_rules(tmp_path: Path) -> None:
    write(tmp_path / "parent.yml", """\
image: {name: parent, base: {os: debian, version: '12'}}
customizations:
  hostname: parent
  packages: {install: [vim, snapd, curl], remove: [nano]}
  services: {enabled: [ssh, cron], disabled: [apt-daily.timer]}
  users:
    - {name: admin, groups: [sudo], shell: /bin/sh}
    - {name: ops, groups: [adm]}
  files:
    - {source: ./files/a, destination: /etc/a}
    - {content: parent, destination: /etc/b}
output: {formats: [raw], sbom: [spdx]}
disk:
  size: 4GiB
  partitions:
    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}
    - {name: root, type: root, size: rest}
""")
    (tmp_path / "files").mkdir()
    child = """\
extends: ./parent.yml
image: {name: child}
customizations:
  packages: {install: [git, nano], remove: [snapd]}
  services: {enabled: [apt-daily.timer], disabled: [cron]}
  users:
    - {name: admin, groups: [docker], shell: /bin/bash}
    - {name: dev}
  files:
    - {content: child, destination: /etc/b}
    - {content: new, destination: /etc/c}
output: {formats: [qcow2]}
disk:
  partitions:
    - {name: root, type: root, size: rest, filesystem: ext4}
  partition_table: mbr
"""
    spec = Spec.from_text(child, name="child.yml", base_dir=tmp_path)
    c = spec.customizations
    assert spec.image.name == "child"  # scalars: child wins
    assert c.hostname == "parent"  # untouched parent values stay
    # package lists are unions; a package the child removes leaves the parent's install
    assert c.packages.install == ("vim", "curl", "git", "nano")
    assert c.packages.remove == ("nano", "snapd")
    # services: child wins across enabled/disabled
    assert c.services.enabled == ("ssh", "apt-daily.timer")
    assert c.services.disabled == ("cron",)
    # users merged by name, lists inside unioned, scalars child wins
    assert [(u.name, u.groups, u.shell) for u in c.users] == [
        ("admin", ("sudo", "docker"), "/bin/bash"), ("ops", ("adm",), "/bin/bash"),
        ("dev", (), "/bin/bash")]
    # files by destination: the child's entry replaces the parent's
    assert [(f.destination, f.content) for f in c.files] == [
        ("/etc/a", None), ("/etc/b", "child"), ("/etc/c", "new")]
    # parent paths are relative to the parent file
    assert c.files[0].source == tmp_path / "files" / "a"
    assert spec.output.formats == ("raw", "qcow2")  # lists of scalars: union
    assert [p.name for p in spec.disk.partitions] == ["root"]  # layouts: child replaces
    assert spec.disk.size == 4 * 1024**3
    assert spec.disk.partition_table == "mbr"


def test_install_of_a_package_the_parent_removes_warns(tmp_path: Path) -> None:
    write(tmp_path / "p.yml", "customizations: {packages: {remove: [snapd]}}\n")
    spec = Spec.from_text(BASE + "extends: ./p.yml\ncustomizations: {packages: "
                          "{install: [snapd]}}\n", name="web.yml", base_dir=tmp_path)
    assert "snapd" in spec.customizations.packages.install
    assert "snapd" in spec.customizations.packages.remove
    warnings = [str(w) for w in check(spec, Config()).warnings]
    assert warnings == ["web.yml:5:39: customizations.packages.install[0]: package 'snapd' is "
                        "both installed and removed; remove wins"]


def test_null_resets_a_parent_value(tmp_path: Path) -> None:
    write(tmp_path / "p.yml", "customizations: {hostname: parent, kernel: {cmdline: quiet}}\n")
    spec = Spec.from_text(BASE + "extends: ./p.yml\ncustomizations: {hostname: null}\n",
                          base_dir=tmp_path)
    assert spec.customizations.hostname is None
    assert spec.customizations.kernel.cmdline == "quiet"


def test_list_of_templates_merges_in_order(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "customizations: {hostname: a, timezone: Europe/Paris}\n")
    write(tmp_path / "b.yml", "customizations: {hostname: b}\n")
    spec = Spec.from_text(BASE + "extends: [./a.yml, ./b.yml]\n", base_dir=tmp_path)
    assert spec.customizations.hostname == "b"
    assert spec.customizations.timezone == "Europe/Paris"


def test_template_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "extends: ./b.yml\n")
    write(tmp_path / "b.yml", "extends: ./a.yml\n")
    spec_file = write(tmp_path / "web.yml", BASE + "extends: ./a.yml\n")
    with pytest.raises(TemplateError) as caught:
        Spec.load(spec_file)
    (problem,) = caught.value.problems
    assert problem.file == str(tmp_path / "b.yml")
    assert (problem.line, problem.column) == (1, 10)
    assert problem.message == (f"template cycle: {spec_file} -> {tmp_path / 'a.yml'} -> "
                               f"{tmp_path / 'b.yml'} -> {tmp_path / 'a.yml'}")


def test_template_depth_is_limited(tmp_path: Path) -> None:
    for i in range(MAX_DEPTH + 2):
        write(tmp_path / f"t{i}.yml", f"extends: ./t{i + 1}.yml\n")
    write(tmp_path / f"t{MAX_DEPTH + 2}.yml", "customizations: {hostname: deep}\n")
    with pytest.raises(TemplateError, match=f"nested more than {MAX_DEPTH} levels deep"):
        Spec.from_text(BASE + "extends: ./t0.yml\n", base_dir=tmp_path)
    # exactly MAX_DEPTH levels are fine
    spec = Spec.from_text(BASE + f"extends: ./t{MAX_DEPTH + 3 - MAX_DEPTH}.yml\n",
                          base_dir=tmp_path)
    assert spec.customizations.hostname == "deep"


def test_missing_template_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as caught:
        Spec.from_text(BASE + "extends: ./nope.yml\n", name="web.yml", base_dir=tmp_path)
    assert str(caught.value.problems[0]).startswith(
        "web.yml:4:10: extends: template file './nope.yml' not found")


def test_error_inside_template_names_the_template_file(tmp_path: Path) -> None:
    write(tmp_path / "t.yml", "customizations:\n  bootlodaer: grub\n")
    with pytest.raises(Exception) as caught:
        Spec.from_text(BASE + "extends: ./t.yml\n", name="web.yml", base_dir=tmp_path)
    assert f"{tmp_path / 't.yml'}:2:3: customizations.bootlodaer: unknown field 'bootlodaer' " \
           "(did you mean 'bootloader'?)" in str(caught.value)

"""Loading specs: examples, schema, normalization, plain data and hashing."""

from __future__ import annotations

import json
from pathlib import Path

import fastjsonschema
import pytest

from imagecomposer.config.model import Config
from imagecomposer.foundation.units import format_size, parse_size
from imagecomposer.spec import Spec, check, schema_text, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BASE = "image:\n  name: web\n  base: {os: debian, version: '12'}\n"


# rpm-fixture.yml needs its fixture repository and config: tests/rpm builds and checks it.
@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.glob("*.yml")
                                        if not p.name.startswith("rpm-fixture")),
                         ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    spec = Spec.load(path)
    validate(spec, Config())
    assert check(spec, Config()).warnings == ()


def test_the_seed_examples_and_bootable_images_are_there() -> None:
    names = {p.name for p in EXAMPLES.glob("*.yml")}
    assert {"minimal-system.yml", "dev-environment.yml", "production-web-server.yml",
            "debian-12-minimal.yml", "debian-12-server.yml"} <= names


def test_bootable_example_is_what_the_boot_tests_expect() -> None:
    spec = Spec.load(EXAMPLES / "debian-12-server.yml")
    c = spec.customizations
    assert spec.disk.size == 3 * 1024**3 and spec.disk.partition_table == "gpt"
    esp, root = spec.disk.partitions
    assert (esp.type, esp.size, esp.filesystem) == ("esp", 512 * 1024**2, "vfat")
    assert (root.type, root.size, root.filesystem, root.mountpoint) == ("root", None, "ext4", "/")
    assert c.bootloader == "systemd-boot" and "console=ttyS0,115200" in c.kernel.cmdline
    assert c.users[0].name == "admin" and "sudo" in c.users[0].groups
    assert c.files[0].source == EXAMPLES / "files" / "motd"
    assert "ssh" in c.services.enabled
    assert spec.output.formats == ("raw", "qcow2")
    assert spec.output.sbom == ("spdx", "cyclonedx")


def test_schema_text_is_the_2020_12_schema_and_compiles() -> None:
    schema = json.loads(schema_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator = fastjsonschema.compile(schema)
    validator({"image": {"name": "x", "base": {"os": "debian", "version": "12"}}})
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        validator({"image": {"name": "x", "base": {"os": "debian", "version": "12"}}, "x": 1})


def test_every_object_in_the_schema_forbids_unknown_keys() -> None:
    def objects(node: object) -> list[dict[str, object]]:
        found: list[dict[str, object]] = []
        if isinstance(node, dict):
            if node.get("type") == "object":
                found.append(node)
            for value in node.values():
                found += objects(value)
        elif isinstance(node, list):
            for value in node:
                found += objects(value)
        return found

    for obj in objects(json.loads(schema_text())):
        assert obj.get("additionalProperties") is not True
        assert "additionalProperties" in obj


def test_numbers_are_read_as_written_where_strings_are_expected() -> None:
    spec = Spec.from_text("image: {name: web, version: 1.10, base: {os: debian, version: 22.10}}\n"
                          "customizations: {files: [{content: x, destination: /x, mode: 0644}]}\n")
    assert spec.image.version == "1.10"
    assert spec.image.base.version == "22.10"
    assert spec.customizations.files[0].mode == "0644"


def test_relative_paths_resolve_against_the_spec_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    spec_file = tmp_path / "sub" / "web.yml"
    spec_file.write_text(BASE + "customizations:\n  scripts: {post_install: [./post.sh]}\n"
                         "output: {sign: {key: ../keys/release.pem}}\n")
    spec = Spec.load(spec_file)
    assert spec.customizations.scripts.post_install == (tmp_path / "sub" / "post.sh",)
    assert spec.output.sign is not None
    assert spec.output.sign.key == tmp_path / "sub" / ".." / "keys" / "release.pem"
    assert spec.path == spec_file


def test_default_partitions_when_none_are_given() -> None:
    spec = Spec.from_text(BASE)
    assert [(p.type, p.filesystem) for p in spec.disk.partitions] == [("esp", "vfat"),
                                                                      ("root", "ext4")]
    mbr = Spec.from_text(BASE + "customizations: {bootloader: grub}\n"
                         "disk: {partition_table: mbr}\n")
    assert [p.type for p in mbr.disk.partitions] == ["root"]


def test_yaml_anchors_and_merge_keys() -> None:
    spec = Spec.from_text(BASE + """\
disk:
  partitions:
    - {name: esp, type: esp, size: 512MiB, filesystem: vfat}
    - &root {name: root, type: root, size: 2GiB, mount_options: noatime}
    - {<<: *root, name: data, type: generic, size: rest, mountpoint: /data}
""")
    data = spec.disk.partitions[2]
    assert (data.name, data.mount_options, data.size) == ("data", "noatime", None)


def test_to_data_removes_secrets_and_canonical_json_keeps_them(tmp_path: Path) -> None:
    hash_ = ("$6$examplesalt0001$4KyZq9mVS10GmIho7w0ctkbW1Q4C2G3lfpKvq.L2Z.5zHoIgncmQWO5f65YSS"
             "azBUcpFiQsLzofHNv7fHHRPG0")
    text = BASE + (f"customizations:\n  users: [{{name: admin, password_hash: '{hash_}'}}]\n"
                   "  files: [{content: s3cr3t, destination: /etc/token}, "
                   "{source: ./f, destination: /etc/f}]\n")
    spec = Spec.from_text(text, base_dir=tmp_path)
    data = spec.to_data()
    assert data["customizations"]["users"][0]["password_hash"] == "<redacted>"
    assert "s3cr3t" not in json.dumps(data)
    assert data["customizations"]["files"][1]["source"] == "./f"
    assert data["disk"]["partitions"][0]["size"] == 512 * 1024**2
    assert hash_ in spec.canonical_json()
    again = Spec.from_text(text, base_dir=tmp_path / "elsewhere")
    assert again.canonical_json() == spec.canonical_json()  # machine independent
    assert again.digest() == spec.digest()
    changed = Spec.from_text(text.replace("admin", "root2"), base_dir=tmp_path)
    assert changed.digest() != spec.digest()


def test_provider_check_uses_the_configuration() -> None:
    spec = Spec.from_text("image: {name: web, base: {os: ubuntu, version: '22.04'}}\n")
    config = Config()
    assert "Provider 'ubuntu' is not configured" in str(check(spec, config).errors[0])
    with_ubuntu = Config(providers={**config.providers, "ubuntu": config.providers["debian"]})
    assert check(spec, with_ubuntu).errors == ()


@pytest.mark.parametrize(("text", "size"), [
    ("4GiB", 4 * 1024**3), ("512MiB", 512 * 1024**2), ("1.5G", 1536 * 1024**2),
    ("2000000000", 2_000_000_000), ("10MB", 10_000_000), ("rest", None), ("auto", None),
    ("64 KiB", 65536), (1024, 1024)])
def test_sizes(text: str | int, size: int | None) -> None:
    assert parse_size(text) == size


def test_size_errors_and_formatting() -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size("4 gigs")
    assert format_size(3 * 1024**3) == "3GiB" and format_size(1000) == "1000B"


def test_empty_sections_mean_unset() -> None:
    spec = Spec.from_text(BASE + "customizations:\n  # nothing yet\noutput:\n")
    assert spec.customizations.hostname is None
    assert spec.output.formats == ("raw",)


def test_fingerprint_follows_referenced_file_contents(tmp_path: Path) -> None:
    from imagecomposer.foundation.fingerprint import fingerprint
    from imagecomposer.spec import validate_file

    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "motd").write_text("hello\n")
    spec_file = tmp_path / "web.yml"
    spec_file.write_text(BASE + "customizations:\n  files:\n"
                         "    - {source: ./files, destination: /etc/extra}\n")
    spec = validate_file(spec_file, Config())
    first = fingerprint(spec)
    assert fingerprint(Spec.load(spec_file)) == first
    (tmp_path / "files" / "motd").write_text("changed\n")
    assert fingerprint(spec) != first
    assert spec.digest() == Spec.load(spec_file).digest()  # the spec text did not change


def test_provider_typo_gets_a_suggestion() -> None:
    spec = Spec.from_text("image: {name: web, base: {os: debain, version: '12'}}\n")
    assert str(check(spec, Config()).errors[0]).endswith("(did you mean 'debian'?)")


def test_yaml_integers() -> None:
    spec = Spec.from_text(BASE + "customizations: {users: [{name: a, uid: 0644}, "
                          "{name: b, uid: 0x10}]}\n")
    assert [u.uid for u in spec.customizations.users] == [644, 16]


def test_public_functions_are_not_shadowed_by_submodules() -> None:
    import importlib

    import imagecomposer.spec as package

    for name in package.__all__:
        try:
            importlib.import_module(f"imagecomposer.spec.{name}")
        except ModuleNotFoundError:
            continue
        assert not isinstance(getattr(package, name), type(importlib)), name

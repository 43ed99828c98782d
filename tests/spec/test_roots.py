"""Files a spec may read (issue 18, item 8, spec side): its directory tree and allowed paths.

Before: ``extends: /etc/shadow`` printed the file's lines in the error, and
``files[].source: /etc/shadow`` (or a symlink to it next to the spec) validated and was copied
into the image. Each test builds its own "host secret" outside the spec's directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecomposer.config import load_config
from imagecomposer.config.model import Config, Core
from imagecomposer.foundation.errors import Problem, TemplateError, ValidationError
from imagecomposer.spec import Spec, check, validate_file
from imagecomposer.spec.roots import is_within, resolve_roots

HEAD = "image: {name: web, base: {os: debian, version: '12'}}\n"
SECRET = "s3cr3t-hash-from-the-host"
SHADOW = f"root:$6${SECRET}:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n"


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory standing for the host, with a shadow file whose lines are mappings."""
    directory = tmp_path / "host"
    directory.mkdir()
    (directory / "shadow").write_text(SHADOW)
    (directory / "shadow.yml").write_text(SHADOW)
    (directory / "key.asc").write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    return directory


@pytest.fixture
def specdir(tmp_path: Path) -> Path:
    directory = tmp_path / "specs"
    directory.mkdir()
    return directory


def spec_file(directory: Path, body: str) -> Path:
    path = directory / "web.yml"
    path.write_text(HEAD + body)
    return path


def problems_of(path: Path, config: Config | None = None) -> list[Problem]:
    """Every problem of loading and validating ``path`` (none: an empty list)."""
    try:
        validate_file(path, config or Config())
    except ValidationError as exc:
        return list(exc.problems)
    return []


def assert_no_secret(problems: list[Problem]) -> None:
    text = "\n".join(str(p) for p in problems)
    assert SECRET not in text and "daemon" not in text and "20228" not in text, text


def test_extends_of_a_host_file_is_refused_without_echoing_it(host: Path,
                                                              specdir: Path) -> None:
    path = spec_file(specdir, f"extends: {host}/shadow\n")
    with pytest.raises(TemplateError) as info:
        Spec.load(path)
    (problem,) = info.value.problems
    assert_no_secret([problem])
    assert (problem.file, problem.line, problem.column, problem.path) == \
        (str(path), 2, 10, "extends")
    assert problem.message.startswith(f"template file '{host}/shadow' is outside the spec's "
                                      f"directory {specdir}; add the path")


def test_an_allowed_host_file_that_is_no_yaml_template_is_not_echoed(host: Path,
                                                                     specdir: Path) -> None:
    """Even where reading is allowed, a file that is not a spec template is refused whole."""
    for name, why in (("shadow", "is not a .yml or .yaml file"),
                      ("shadow.yml", "is not a build spec template (none of its top-level "
                                     "keys is a spec field)")):
        path = spec_file(specdir, f"extends: {host}/{name}\nbuild: {{allowed_paths: [{host}]}}\n")
        with pytest.raises(TemplateError) as info:
            Spec.load(path)
        (problem,) = info.value.problems
        assert_no_secret([problem])
        assert problem.message == f"template file '{host}/{name}' {why}"


def test_a_symlink_next_to_the_spec_does_not_lead_out(host: Path, specdir: Path) -> None:
    (specdir / "base.yml").symlink_to(host / "shadow.yml")
    (specdir / "secret").symlink_to(host / "shadow")
    path = spec_file(specdir, "extends: ./base.yml\n")
    with pytest.raises(TemplateError) as info:
        Spec.load(path)
    assert f"(it resolves to '{host}/shadow.yml') is outside" in info.value.problems[0].message
    assert_no_secret(list(info.value.problems))

    path = spec_file(specdir, "customizations:\n  files:\n"
                              "    - {source: ./secret, destination: /etc/copied}\n")
    (problem,) = problems_of(path)
    assert (problem.line, problem.path) == (4, "customizations.files[0].source")
    assert problem.message.startswith(f"'./secret' (it resolves to '{host}/shadow') is outside")


def test_every_referenced_file_outside_the_tree_is_refused(host: Path, specdir: Path) -> None:
    (specdir / "inside.sh").write_text("#!/bin/sh\n")
    path = spec_file(specdir, f"""\
repositories:
  - {{name: extra, url: "https://repo.invalid/debian", suite: stable, key: {host}/key.asc}}
customizations:
  files:
    - {{source: {host}/shadow, destination: /etc/shadow-copy}}
    - {{source: ../host/shadow, destination: /etc/relative-copy}}
  scripts:
    post_install: [./inside.sh, {host}/key.asc]
output:
  sign: {{key: {host}/key.asc}}
""")
    found = {p.path: p for p in problems_of(path)}
    assert set(found) == {"repositories[0].key", "customizations.files[0].source",
                          "customizations.files[1].source",
                          "customizations.scripts.post_install[1]", "output.sign.key"}
    assert all("is outside the spec's directory" in p.message for p in found.values())
    assert found["customizations.files[1].source"].message.startswith(
        f"'{host}/shadow' is outside")  # shown normalized, not as ./../host/shadow
    assert found["customizations.files[0].source"].line == 6


def test_outside_the_tree_nothing_says_whether_a_file_exists(host: Path,
                                                             specdir: Path) -> None:
    path = spec_file(specdir, "customizations:\n  files:\n"
                              f"    - {{source: {host}/no-such-file, destination: /x}}\n"
                              f"    - {{source: {host}/shadow, destination: /y}}\n")
    first, second = problems_of(path)
    assert "Missing" not in first.message
    assert first.message.replace("no-such-file", "shadow") == second.message


def test_build_allowed_paths_allows_a_directory(host: Path, specdir: Path) -> None:
    path = spec_file(specdir, "customizations:\n  files:\n"
                              f"    - {{source: {host}/shadow, destination: /etc/x}}\n"
                              "build:\n  allowed_paths: [../host]\n")
    assert problems_of(path) == []
    spec = Spec.load(path)
    assert spec.build.allowed_paths == (specdir / "../host",)


def test_core_allowed_paths_of_the_configuration(host: Path, specdir: Path,
                                                 tmp_path: Path) -> None:
    config_file = tmp_path / "config.yml"
    config_file.write_text("core:\n  allowed_paths: [./host]\n")
    config = load_config(config_file, environ={}).config
    assert config.core.allowed_paths == (tmp_path / "host",)
    path = spec_file(specdir, "customizations:\n  files:\n"
                              f"    - {{source: {host}/shadow, destination: /etc/x}}\n")
    assert problems_of(path, config) == []
    assert len(problems_of(path, Config())) == 1


def test_templates_from_an_allowed_directory(tmp_path: Path, specdir: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "files").mkdir(parents=True)
    (shared / "files" / "motd").write_text("hello\n")
    (shared / "base.yml").write_text("extends: ./common.yml\ncustomizations:\n  files:\n"
                                     "    - {source: ./files/motd, destination: /etc/motd}\n")
    (shared / "common.yml").write_text("customizations: {hostname: shared}\n")
    path = spec_file(specdir, "extends: ../shared/base.yml\n")
    with pytest.raises(TemplateError, match="is outside the spec's directory"):
        Spec.load(path)
    # allowed by the configuration (the CLI passes core.allowed_paths to Spec.load) ...
    config = Config(core=Core(allowed_paths=(shared,)))
    assert problems_of(path, config) == []
    spec = Spec.load(path, allowed_paths=[shared])
    assert spec.customizations.hostname == "shared"
    source = spec.customizations.files[0].source
    assert source is not None and source.resolve() == (shared / "files" / "motd").resolve()
    # ... or by the spec itself
    path.write_text(HEAD + "extends: ../shared/base.yml\nbuild: {allowed_paths: [../shared]}\n")
    assert problems_of(path) == []


def test_a_template_cannot_widen_the_allowed_paths(specdir: Path) -> None:
    (specdir / "base.yml").write_text("build:\n  allowed_paths: [/]\n")
    path = spec_file(specdir, "extends: ./base.yml\n")
    with pytest.raises(TemplateError) as info:
        Spec.load(path)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.path) == \
        (str(specdir / "base.yml"), 2, "build.allowed_paths")
    assert problem.message == ("build.allowed_paths is only honoured in the spec file itself, "
                               "not in a template")


def test_allowed_paths_take_no_variables(specdir: Path) -> None:
    path = spec_file(specdir, "variables: {top: /}\nbuild: {allowed_paths: ['${top}']}\n")
    with pytest.raises(TemplateError, match=r"build\.allowed_paths cannot use variables"):
        Spec.load(path)


def test_spec_from_text_uses_its_base_dir(host: Path, specdir: Path) -> None:
    spec = Spec.from_text(HEAD + "customizations:\n  files:\n"
                          f"    - {{source: {host}/shadow, destination: /x}}\n",
                          base_dir=specdir)
    (error,) = check(spec, Config()).errors
    assert "is outside the spec's directory" in error.message


def test_is_within_is_a_pure_check_on_resolved_paths() -> None:
    roots = (Path("/srv/specs"), Path("/opt/shared/motd"))
    assert is_within(Path("/srv/specs"), roots)
    assert is_within(Path("/srv/specs/files/a"), roots)
    assert is_within(Path("/opt/shared/motd"), roots)  # a single allowed file
    assert not is_within(Path("/srv/specs-evil/a"), roots)
    assert not is_within(Path("/srv"), roots)
    assert not is_within(Path("/opt/shared/motd2"), roots)


def test_roots_are_resolved_and_relative_ones_follow_the_spec(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    real = real.resolve()
    (tmp_path / "link").symlink_to(real)
    assert resolve_roots(tmp_path / "link", [Path("sub"), Path("/abs/../abs2")]) == \
        (real, real / "sub", Path("/abs2"))

"""The CLI wires library objects and maps errors to exit codes (0, 1, 2, 130)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagecomposer.cli.main import main

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No config file from the machine; caches and workspaces under tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("IMAGECOMPOSER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("IMAGECOMPOSER_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.delenv("IMAGECOMPOSER_CONFIG", raising=False)
    return tmp_path


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("imagecomposer ")


def test_schema_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")


def test_validate_examples_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    specs = [str(p) for p in sorted(EXAMPLES.glob("debian-12-*.yml"))]
    assert main(["validate", *specs]) == 0
    assert capsys.readouterr().out.count(": valid") == len(specs)


def test_validate_broken_spec_exit_1(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = tmp_path / "web.yml"
    spec.write_text("image:\n  name: web\n  base: {os: ubuntu, version: '22.04'}\n")
    assert main(["validate", str(spec)]) == 1


def test_config_init_then_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "init", "ic.yml"]) == 0
    assert (tmp_path / "ic.yml").exists()
    assert main(["config", "init", "ic.yml"]) == 2  # exists: a usage error
    capsys.readouterr()
    assert main(["--config", "ic.yml", "config", "show"]) == 0
    shown = capsys.readouterr().out
    assert "cache_dir" in shown and "env IMAGECOMPOSER_CACHE_DIR" in shown


def test_build_up_to_validate_needs_no_network(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--stage", "validate", str(EXAMPLES / "debian-12-minimal.yml")]) == 0
    table = capsys.readouterr().out
    assert "validate       ran" in table
    assert "packages       skipped  -        after --stage validate" in table


def test_bad_timeout_is_a_usage_error_of_build(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["build", "--timeout", "soon", str(EXAMPLES / "debian-12-minimal.yml")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: imagecomposer build ")  # build's usage, not the top level's
    assert "invalid duration 'soon'" in err


def test_unknown_stage_is_rejected_by_argparse() -> None:
    with pytest.raises(SystemExit) as info:
        main(["build", "--stage", "packagez", "x.yml"])
    assert info.value.code == 2


def test_set_must_be_name_value() -> None:
    assert main(["validate", "--set", "novalue", str(EXAMPLES / "debian-12-minimal.yml")]) == 2


def test_boot_secure_boot_needs_a_certificate(tmp_path: Path) -> None:
    image = tmp_path / "x.raw"
    image.write_bytes(b"")
    assert main(["boot", "--secure-boot", str(image)]) == 2


def test_build_several_specs_runs_each_in_its_own_process(
        capfd: pytest.CaptureFixture[str]) -> None:
    specs = [str(EXAMPLES / "debian-12-minimal.yml"), str(EXAMPLES / "debian-12-server.yml")]
    assert main(["build", "--stage", "validate", *specs]) == 0
    out = capfd.readouterr()
    assert out.out.count("validate       ran") == 2
    assert "debian-12-server.yml: ok" in out.err


def test_several_specs_report_the_worst_exit_code(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("image: {name: x, base: {os: debian, version: '12'}}\nfoo: 1\n")
    specs = [str(EXAMPLES / "debian-12-minimal.yml"), str(broken)]
    assert main(["build", "--stage", "validate", *specs]) == 1


def test_skipping_validate_warns(capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(EXAMPLES / "debian-12-minimal.yml")
    assert main(["build", "--stage", "validate", "--skip-stage", "validate", spec]) == 0
    assert "skipping the validate stage is not recommended" in capsys.readouterr().err

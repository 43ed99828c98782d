"""The CLI's cluster commands fail with one clear line: a broker that cannot be reached, a
local-only option with --cluster, a Spec object given to build_many(cluster=)."""

from __future__ import annotations

from pathlib import Path

import pytest

import imagecomposer
from imagecomposer.cli.main import main
from imagecomposer.foundation.errors import UsageError
from imagecomposer.spec.model import Base, Image, Spec
from tests.cluster.conftest import free_port


def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.yml"
    path.write_text("image: {name: s, base: {os: debian, version: '12'}}\n")
    return path


def test_an_unreachable_broker_is_one_error_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    code = main(["build", "--cluster", url, str(spec_file(tmp_path))])
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot reach the build cluster's broker at {url}" in err
    assert "Traceback" not in err


def test_local_only_options_are_refused_with_a_cluster(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", "--cluster", "redis://127.0.0.1:1/0", "--stage", "packages",
                 str(spec_file(tmp_path))])
    assert code == 2
    assert "--stage: not supported with --cluster" in capsys.readouterr().err
    code = main(["build", "--cluster", "redis://127.0.0.1:1/0", "--check-reproducible",
                 str(spec_file(tmp_path))])
    assert code == 2
    assert "--check-reproducible: not supported with --cluster" in capsys.readouterr().err


def test_build_many_on_a_cluster_takes_spec_files() -> None:
    spec = Spec(image=Image("x", Base("debian", "12")))
    with pytest.raises(UsageError, match="takes spec files"):
        imagecomposer.build_many([spec], cluster="redis://127.0.0.1:1/0")


def test_the_worker_command_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    out = capsys.readouterr().out
    assert "--cluster URL" in out and "--secrets DIR" in out and "--arch" in out
    assert "--min-free SIZE" in out and "--space-check SECONDS" in out

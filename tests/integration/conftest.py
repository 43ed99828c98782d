"""One package cache and installed-tree cache for all image builds of a test session, and
the example images built once per session (``example_build``), for every test that reads
them (the acceptance test, inspect and compare).

The examples are built the way a user builds them: ``imagecomposer build`` in a process of
its own, whose console output and ``--log-file`` are kept (:class:`CliBuild`), so the tests
can check what a user sees (issue 12: at most ~30 lines, no command lines) at no extra cost.
The server example gets one more authorized SSH key (``ssh_key``, made for the session) so
that a boot test can log in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from imagecomposer.config import apply_overrides, load_config
from imagecomposer.config.model import Config
from imagecomposer.spec import Spec

EXAMPLES = Path(__file__).parents[2] / "examples"


@attrs.frozen
class CliBuild:
    """What ``imagecomposer build`` printed, and its debug log file."""

    stdout: str
    stderr: str
    log: str  # the --log-file: every command and step, with timestamps
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines() + self.stdout.splitlines()


Built = tuple[Spec, CliBuild, Path]  # the spec, its first build's output, the output dir


@pytest.fixture(scope="session")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    base = tmp_path_factory.mktemp("ic")
    loaded = load_config(None, environ={})
    loaded = apply_overrides(loaded, {"core.cache_dir": str(base / "cache"),
                                      "core.work_dir": str(base / "work")}, "command line")
    return loaded.config


@pytest.fixture(scope="session")
def config_file(config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's configuration as a file, for the CLI."""
    path = tmp_path_factory.mktemp("ic-config") / "imagecomposer.yml"
    path.write_text(f"core: {{cache_dir: '{config.core.cache_dir}', "
                    f"work_dir: '{config.core.work_dir}'}}\n")
    return path


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway ed25519 key pair (the private key's path; ``.pub`` beside it)."""
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "imagecomposer-test",
                    "-f", str(key)], check=True)
    return key


def cli_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("IMAGECOMPOSER_")}


def with_key(name: str, key: Path, directory: Path) -> Path:
    """examples/NAME.yml with ``key`` authorized for its first user, in ``directory`` (with
    the files it copies into the image)."""
    text = (EXAMPLES / f"{name}.yml").read_text()
    marker = "      ssh_keys:\n"
    assert marker in text
    public = key.with_name(key.name + ".pub").read_text().strip()
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLES / "files", directory / "files", dirs_exist_ok=True)
    spec = directory / f"{name}.yml"
    spec.write_text(text.replace(marker, f'{marker}        - "{public}"\n', 1))
    return spec


@pytest.fixture(scope="session")
def example_build(config_file: Path, ssh_key: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Callable[[str, Path | None], Built]:
    """``example_build(name, spec_path=None)``: the spec examples/NAME.yml (or the one at
    ``spec_path``; the server example with ``ssh_key`` authorized) built once per session
    with ``imagecomposer build``; later calls return the same build."""
    built: dict[str, Built] = {}

    def build(name: str, spec_path: Path | None = None) -> Built:
        if name not in built:
            base = tmp_path_factory.mktemp(name)
            if spec_path is None:
                spec_path = (with_key(name, ssh_key, base / "spec")
                             if name == "debian-12-server" else EXAMPLES / f"{name}.yml")
            out, log = base / "out", base / "build.log"
            began = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "imagecomposer", "--config", str(config_file),
                 "--log-file", str(log), "build", "-o", str(out), str(spec_path)],
                capture_output=True, text=True, env=cli_environment(), check=False)
            seconds = time.monotonic() - began
            assert done.returncode == 0, done.stdout + done.stderr[-5000:]
            result = CliBuild(done.stdout, done.stderr, log.read_text(), seconds)
            built[name] = (Spec.load(spec_path), result, out)
        return built[name]

    return build

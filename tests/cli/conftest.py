"""The CLI as a user runs it: a real process, its stdout and stderr as they are printed.

``hermetic`` serves a signed test archive on 127.0.0.1 and writes a configuration naming
it, so that ``build --stage packages`` and ``resolve`` run without the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import pytest

from tests.fixtures.debrepo import DebArchive, GpgKey, RepoServer, base_system

EXAMPLES = Path(__file__).parents[2] / "examples"


@attrs.frozen
class Hermetic:
    config: Path  # a configuration file: caches, workspaces, the test archive
    root: Path  # tmp_path
    server: RepoServer
    archive: DebArchive

    def spec(self, name: str = "web", install: Sequence[str] = ()) -> Path:
        path = self.root / f"{name}.yml"
        packages = f", customizations: {{packages: {{install: [{', '.join(install)}]}}}}" \
            if install else ""
        path.write_text(f"{{image: {{name: {name}, base: {{os: debian, version: '12', "
                        f"type: minimal}}}}{packages}}}\n")
        return path


def environment(home: Path) -> dict[str, str]:
    """The caller's environment without imagecomposer settings, HOME in the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGECOMPOSER_")}
    env.update(HOME=str(home), IMAGECOMPOSER_CACHE_DIR=str(home / "cache"),
               IMAGECOMPOSER_WORK_DIR=str(home / "work"))
    return env


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path) -> Run:
    """``cli(*args, check=0, **popen)``: run ``python -m imagecomposer ARGS`` in tmp_path,
    assert its exit code (None: any) and that no traceback reached the user."""

    def run(*args: str | Path, check: int | None = 0, env: dict[str, str] | None = None,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "imagecomposer", *map(str, args)],
                              capture_output=True, text=True, cwd=tmp_path,
                              env=env or environment(tmp_path), check=False,
                              **kwargs)  # type: ignore[call-overload]
        assert "Traceback" not in done.stderr, done.stderr
        if check is not None:
            assert done.returncode == check, done.stdout + done.stderr
        return done

    return run


@pytest.fixture(scope="session")
def archive_key(tmp_path_factory: pytest.TempPathFactory) -> GpgKey:
    return GpgKey.create(tmp_path_factory.mktemp("cli-archive-key"))


@pytest.fixture
def hermetic(tmp_path: Path, archive_key: GpgKey) -> Iterator[Hermetic]:
    www = tmp_path / "www"
    archive = DebArchive(www / "debian", archive_key)
    archive.add("bookworm", *base_system())
    archive.add("bookworm-updates")
    archive.add("bookworm-security")
    archive.publish()
    with RepoServer(www) as server:
        mirror = server.url + "/debian"
        config = tmp_path / "imagecomposer.yml"
        config.write_text(
            f"core: {{cache_dir: '{tmp_path}/cache', work_dir: '{tmp_path}/work'}}\n"
            f"providers:\n  debian: {{kind: deb, mirror: '{mirror}', "
            f"security_mirror: '{mirror}', keyring: '{archive_key.keyring}'}}\n")
        yield Hermetic(config, tmp_path, server, archive)

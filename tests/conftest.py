"""Shared test fixtures.

Markers: ``root``, ``network``, ``boot``, ``slow`` (see pyproject.toml). They all run in CI;
locally, ``-m "not network and not boot"`` gives the fast hermetic suite.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imagecomposer.foundation import userns
from tests.unprivileged import User, unprivileged_user

_SEAL_DIR: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Seal cache entries with a key of this test session (in a temporary directory, created
    on first use), never with the host's /var/lib/imagecomposer/cache.key: a process the
    tests start inherits it through $IMAGECOMPOSER_SEAL_KEY.

    ``IMAGECOMPOSER_TEST_USERNS=1``, not as root: run the session as root of a user
    namespace mapped to the user's subordinate ids, as a rootless build does (the sandbox
    tests run so, as an unprivileged user, in tests/foundation/test_userns.py).

    Ctrl-C is Ctrl-C for every process the tests start: a session started with SIGINT
    ignored (a background job of a non-interactive shell) would pass that on to its
    children, and the tests that interrupt a build with SIGINT would see it ignored."""
    global _SEAL_DIR
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if "IMAGECOMPOSER_SEAL_KEY" not in os.environ:
        _SEAL_DIR = tempfile.mkdtemp(prefix="ic-seal-")
        os.environ["IMAGECOMPOSER_SEAL_KEY"] = str(Path(_SEAL_DIR) / "cache.key")
    if os.environ.get("IMAGECOMPOSER_TEST_USERNS") == "1" and os.geteuid() != 0:
        userns.become_root()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SEAL_DIR is not None:
        shutil.rmtree(_SEAL_DIR, ignore_errors=True)
        os.environ.pop("IMAGECOMPOSER_SEAL_KEY", None)


@pytest.fixture(scope="session")
def rootless_user() -> Iterator[User]:
    """An unprivileged user with subordinate uids and gids, for the session."""
    with unprivileged_user("rl", subids=True) as user:
        yield user


@pytest.fixture(scope="session")
def plain_user() -> Iterator[User]:
    """An unprivileged user without subordinate ids, for the session."""
    with unprivileged_user("pl", subids=False) as user:
        yield user


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root")
        for item in items:
            if "root" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def fake_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str], Path]]:
    """Put a small executable named ``name`` with shell ``body`` first on PATH."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    def make(name: str, body: str) -> Path:
        tool = bindir / name
        tool.write_text("#!/bin/sh\n" + body + "\n")
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
        return tool

    yield make

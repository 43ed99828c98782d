"""Shared test fixtures.

Markers: ``root``, ``network``, ``boot``, ``slow`` (see pyproject.toml). They all run in CI;
locally, ``-m "not network and not boot"`` gives the fast hermetic suite.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imagecomposer.foundation import userns
from tests.unprivileged import User, unprivileged_user


def pytest_configure(config: pytest.Config) -> None:
    """``IMAGECOMPOSER_TEST_USERNS=1``, not as root: run the session as root of a user
    namespace mapped to the user's subordinate ids, as a rootless build does (the sandbox
    tests run so, as an unprivileged user, in tests/foundation/test_userns.py)."""
    if os.environ.get("IMAGECOMPOSER_TEST_USERNS") == "1" and os.geteuid() != 0:
        userns.become_root()


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

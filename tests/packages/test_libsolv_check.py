"""The libsolv build is checked for Debian support, with an actionable message."""

from __future__ import annotations

import sys
import types

import pytest

from imagecomposer.families import libsolv


def test_installed_libsolv_supports_deb_and_rpm() -> None:
    libsolv.solv.cache_clear()
    module = libsolv.solv()
    assert hasattr(module.Repo, "add_debpackages")


def test_a_build_without_debian_support_names_the_install_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Pool:
        DISTTYPE_DEB, DISTTYPE_RPM = 1, 0

        def setdisttype(self, kind: int) -> int:
            return -1 if kind == 1 else 0

    fake = types.ModuleType("solv")
    fake.Pool = Pool  # type: ignore[attr-defined]
    fake.Repo = type("Repo", (), {})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "solv", fake)
    libsolv.solv.cache_clear()
    try:
        with pytest.raises(libsolv.LibsolvUnsupported,
                           match=r"without deb support: .* scripts/build-solv-wheel\.sh"):
            libsolv.solv()
    finally:
        libsolv.solv.cache_clear()

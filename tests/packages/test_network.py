"""Against the real Debian archive named by the host's apt sources (marker ``network``).

Kept lean for CI: metadata is fetched once per session (``real_config``), the minimal set
is downloaded once. apt parity on many requests is in test_parity.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from imagecomposer.cache import PackageCache
from imagecomposer.config.model import Config
from imagecomposer.families import aptsources
from imagecomposer.resolver import Resolver
from tests.packages.conftest import make_spec

pytestmark = pytest.mark.network


def test_minimal_resolve_and_download(real_config: Config) -> None:
    res = Resolver(real_config).resolve(make_spec())
    lock = res.lock
    names = {p.name for p in lock.packages}
    assert {"base-files", "dpkg", "libc6", "systemd-sysv", "linux-image-amd64",
            "initramfs-tools", "udev", "systemd-boot"} <= names
    assert not {"openssh-server", "dracut"} & names
    with PackageCache(real_config) as cache:
        paths = cache.fetch(lock, parallel=8)
        again = PackageCache(real_config)
        assert again.missing(lock) == []
    for package in lock.packages[:5]:
        assert hashlib.sha256(paths[package.name].read_bytes()).hexdigest() == package.sha256
    assert sum(Path(p).stat().st_size for p in paths.values()) == res.download_size


def test_debian_13_with_no_configuration(real_config: Config) -> None:
    """The host lists only bookworm suites; its Debian archive serves trixie too."""
    lock = Resolver(real_config).resolve(make_spec(version="13")).lock
    assert [r.suite for r in lock.repositories] == ["trixie", "trixie-updates",
                                                    "trixie-security"]
    host = {s.uri for s in aptsources.read_sources()}
    assert {r.url for r in lock.repositories} <= host
    kernel = lock.package("linux-image-amd64")
    assert kernel is not None and kernel.version.startswith("6.12")

"""Fixtures for disk assembly tests: small trees with owners, modes, links and holes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def root_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "root"
    (tree / "etc" / "ssh").mkdir(parents=True)
    (tree / "home" / "alice").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("testhost\n")
    (tree / "etc" / "motd").symlink_to("hostname")
    secret = tree / "etc" / "ssh" / "key"
    secret.write_text("not really a key\n")
    secret.chmod(0o600)
    notes = tree / "home" / "alice" / "notes"
    notes.write_bytes(bytes(range(256)) * 4096)  # 1 MiB, not all zero
    if os.geteuid() == 0:
        os.chown(tree / "home" / "alice", 1000, 1000)
        os.chown(notes, 1000, 1000)
    return tree


@pytest.fixture
def esp_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "esp"
    (tree / "EFI" / "BOOT").mkdir(parents=True)
    (tree / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(b"MZ" + bytes(4094))
    (tree / "loader").mkdir()
    (tree / "loader" / "loader.conf").write_text("timeout 0\n")
    return tree


@pytest.fixture
def flat_esp_tree(tmp_path: Path) -> Path:
    """An ESP tree without subdirectories (nested ones are reproducible too since FAT trees
    are copied in name order with the epoch as every time: test_reproducible_filesystems)."""
    tree = tmp_path / "flat-esp"
    tree.mkdir()
    (tree / "startup.nsh").write_text("fs0:\\vmlinuz\n")
    os.utime(tree / "startup.nsh", (1_700_000_000, 1_700_000_000))
    return tree

"""RPM-family differences of the configuration stage: kernels, presets, SELinux."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imagecomposer.families.rpm.configure import apply_presets, configure_selinux, expose_kernels
from imagecomposer.foundation.errors import ComposeError


def test_expose_kernels(tmp_path: Path) -> None:
    modules = tmp_path / "usr/lib/modules/6.9.1-200.fc42.x86_64"
    modules.mkdir(parents=True)
    (modules / "vmlinuz").write_bytes(b"kernel image")
    assert expose_kernels(tmp_path) == ["6.9.1-200.fc42.x86_64"]
    assert (tmp_path / "boot/vmlinuz-6.9.1-200.fc42.x86_64").read_bytes() == b"kernel image"
    assert expose_kernels(tmp_path) == []  # idempotent
    assert expose_kernels(tmp_path / "empty") == []


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="no systemctl on the host")
def test_presets_enable_units(tmp_path: Path) -> None:
    units = tmp_path / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for name in ("wanted", "unwanted"):
        (units / f"{name}.service").write_text(
            f"[Unit]\nDescription={name}\n[Service]\nExecStart=/bin/true\n"
            "[Install]\nWantedBy=multi-user.target\n")
    presets = tmp_path / "usr/lib/systemd/system-preset"
    presets.mkdir(parents=True)
    (presets / "90-default.preset").write_text("enable wanted.service\ndisable *\n")
    (tmp_path / "etc").mkdir()
    assert apply_presets(tmp_path)
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "wanted.service").is_symlink()
    assert not (wants / "unwanted.service").exists()
    assert not apply_presets(tmp_path / "no-systemd")


def _policy_tree(tree: Path) -> Path:
    config = tree / "etc/selinux/config"
    config.parent.mkdir(parents=True)
    config.write_text("# comment\nSELINUX=enforcing\nSELINUXTYPE=targeted\n")
    contexts = tree / "etc/selinux/targeted/contexts/files/file_contexts"
    contexts.parent.mkdir(parents=True)
    contexts.write_text("/.*  system_u:object_r:default_t:s0\n")
    return config


@pytest.mark.skipif(shutil.which("setfiles") is None, reason="no setfiles on the host")
def test_selinux_labels_the_tree_at_build_time(tmp_path: Path) -> None:
    """The host's setfiles labels the tree with the image's targeted contexts (the image's
    own setfiles in the sandbox cannot write security.selinux; no first-boot relabel)."""
    config = _policy_tree(tmp_path)
    assert configure_selinux(tmp_path, "permissive") == "setfiles"
    assert "SELINUX=permissive\n" in config.read_text()
    assert "SELINUXTYPE=targeted" in config.read_text()
    assert os.getxattr(config, "security.selinux") == b"system_u:object_r:default_t:s0\0"
    assert not (tmp_path / ".autorelabel").exists()


def test_selinux_needs_a_policy(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="selinux-policy-targeted"):
        configure_selinux(tmp_path, "enforcing")
    (tmp_path / "etc/selinux").mkdir(parents=True)
    (tmp_path / "etc/selinux/config").write_text("SELINUXTYPE=mls\n")
    with pytest.raises(ComposeError, match="policy mls is not installed"):
        configure_selinux(tmp_path, "enforcing")


def test_selinux_disabled(tmp_path: Path) -> None:
    assert configure_selinux(tmp_path, "disabled") == "none"
    config = _policy_tree(tmp_path)
    assert configure_selinux(tmp_path, "disabled") == "config"
    assert "SELINUX=disabled" in config.read_text()
    assert "security.selinux" not in os.listxattr(config)

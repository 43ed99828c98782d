"""RPM-family differences of the configuration stage: kernels, presets, SELinux."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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


def _policy_tree(tree: Path, *, setfiles: bool) -> Path:
    config = tree / "etc/selinux/config"
    config.parent.mkdir(parents=True)
    config.write_text("# comment\nSELINUX=enforcing\nSELINUXTYPE=targeted\n")
    contexts = tree / "etc/selinux/targeted/contexts/files/file_contexts"
    contexts.parent.mkdir(parents=True)
    contexts.write_text("/.*  system_u:object_r:default_t:s0\n")
    if setfiles:
        (tree / "usr/sbin").mkdir(parents=True)
        (tree / "usr/sbin/setfiles").write_text("#!/bin/sh\n")
    return config


def test_selinux_relabel_with_setfiles(tmp_path: Path) -> None:
    config = _policy_tree(tmp_path, setfiles=True)
    calls: list[tuple[Path, list[str]]] = []

    def chroot(tree: Path, argv: list[str], **kwargs: Any) -> None:
        calls.append((tree, argv))

    assert configure_selinux(tmp_path, "permissive", chroot=chroot) == "setfiles"
    assert "SELINUX=permissive\n" in config.read_text()
    assert "SELINUXTYPE=targeted" in config.read_text()
    assert calls == [(tmp_path, ["/usr/sbin/setfiles", "-F", "-e", "/proc", "-e", "/sys",
                                 "-e", "/dev", "-e", "/run",
                                 "/etc/selinux/targeted/contexts/files/file_contexts", "/"])]


def test_selinux_without_setfiles_relabels_at_boot(tmp_path: Path) -> None:
    _policy_tree(tmp_path, setfiles=False)
    assert configure_selinux(tmp_path, "enforcing") == "autorelabel"
    assert (tmp_path / ".autorelabel").is_file()


def test_selinux_needs_a_policy(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="selinux-policy-targeted"):
        configure_selinux(tmp_path, "enforcing")
    (tmp_path / "etc/selinux").mkdir(parents=True)
    (tmp_path / "etc/selinux/config").write_text("SELINUXTYPE=mls\n")
    with pytest.raises(ComposeError, match="selinux-policy-mls"):
        configure_selinux(tmp_path, "enforcing")


def test_selinux_disabled(tmp_path: Path) -> None:
    assert configure_selinux(tmp_path, "disabled") == "none"
    config = _policy_tree(tmp_path, setfiles=True)
    assert configure_selinux(tmp_path, "disabled") == "config"
    assert "SELINUX=disabled" in config.read_text()

"""SELinux on Debian is real (issue 12): the profile's policy packages are requested and the
family's finish writes the mode and labels the tree at build time with the host's setfiles
against the image's own file contexts (it used to add kernel options and nothing else)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import attrs
import pytest

from imagecomposer.config.model import Config
from imagecomposer.families import TreeContext, family
from imagecomposer.families.request import package_request
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.lock import Lock
from imagecomposer.spec.model import Base, Image, Spec

needs_setfiles = pytest.mark.skipif(shutil.which("setfiles") is None,
                                    reason="no setfiles on the host")
CONTEXTS = "etc/selinux/default/contexts/files/file_contexts"


def spec(mode: str) -> Spec:
    s = Spec(image=Image(name="se", base=Base(os="debian", version="12")))
    c = s.customizations
    return attrs.evolve(s, customizations=attrs.evolve(
        c, security=attrs.evolve(c.security, selinux=mode)))


def debian_tree(tree: Path) -> Path:
    """What selinux-basics and selinux-policy-default leave: the config (disabled, as the
    package ships it) and the default policy's file contexts."""
    (tree / "etc/selinux").mkdir(parents=True)
    (tree / "etc/selinux/config").write_text("SELINUX=disabled\nSELINUXTYPE=default\n")
    (tree / CONTEXTS).parent.mkdir(parents=True)
    (tree / CONTEXTS).write_text("/.*\tsystem_u:object_r:default_t:s0\n"
                                 "/usr/bin(/.*)?\tsystem_u:object_r:bin_t:s0\n")
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/sh").write_text("#!\n")
    return tree


def finish(tree: Path, mode: str) -> None:
    lock = Lock(os="debian", version="12", arch="amd64", kind="deb", repositories=(),
                packages=())
    family("deb").finish(TreeContext(tree, spec(mode), lock, Config()))


def label(path: Path) -> bytes:
    return os.getxattr(path, "security.selinux", follow_symlinks=False)


def test_selinux_on_requests_the_profiles_policy_packages() -> None:
    assert not package_request(spec("disabled")).selinux
    assert package_request(spec("permissive")).selinux
    assert package_request(spec("enforcing")) == package_request(spec("permissive"))


@needs_setfiles
def test_debian_tree_is_labelled_and_the_mode_written(tmp_path: Path) -> None:
    tree = debian_tree(tmp_path / "root")
    finish(tree, "enforcing")
    config = (tree / "etc/selinux/config").read_text()
    assert "SELINUX=enforcing\n" in config and "SELINUXTYPE=default" in config
    assert label(tree / "usr/bin/sh") == b"system_u:object_r:bin_t:s0\0"
    assert label(tree / "etc/selinux/config") == b"system_u:object_r:default_t:s0\0"
    assert label(tree) == b"system_u:object_r:default_t:s0\0"


@needs_setfiles
def test_a_planted_contexts_link_reads_inside_the_tree(tmp_path: Path) -> None:
    """A file_contexts symlink to an absolute path resolves inside the image: the host's
    file of that name is never what setfiles reads."""
    tree = debian_tree(tmp_path / "root")
    host = tmp_path / "host-contexts"
    host.write_text("/.*\tsystem_u:object_r:shadow_t:s0\n")
    (tree / CONTEXTS).rename(tree / "etc/own-contexts")
    (tree / CONTEXTS).symlink_to(f"/../../../../../..{host}")  # up and out: stays inside
    with pytest.raises(ComposeError, match="policy default is not installed"):
        finish(tree, "permissive")
    (tree / CONTEXTS).unlink()
    (tree / CONTEXTS).symlink_to("/etc/own-contexts")
    finish(tree, "permissive")
    assert label(tree / "usr/bin/sh") == b"system_u:object_r:bin_t:s0\0"
    assert host.read_text() == "/.*\tsystem_u:object_r:shadow_t:s0\n"
    assert b"shadow_t" not in label(tree / "etc/selinux/config")


def test_selinux_without_the_policy_is_an_error_naming_the_packages(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with pytest.raises(ComposeError, match="selinux-basics and selinux-policy-default"):
        finish(tmp_path / "root", "permissive")


def test_disabled_leaves_a_tree_without_selinux_alone(tmp_path: Path) -> None:
    (tmp_path / "root/etc").mkdir(parents=True)
    finish(tmp_path / "root", "disabled")
    assert not (tmp_path / "root/etc/selinux").exists()
    assert "security.selinux" not in os.listxattr(tmp_path / "root")

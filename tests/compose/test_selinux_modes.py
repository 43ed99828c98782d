"""What ``security.selinux: enforcing`` changes against ``permissive`` in a built image: the
``enforcing=`` word of the kernel command line and ``SELINUX=`` in /etc/selinux/config,
nothing else. tests/integration/test_selinux_image.py relies on it: it boots the permissive
image with ``enforcing=1`` (the command line wins over the config when the policy loads)
instead of building a second image."""

from __future__ import annotations

from pathlib import Path

import attrs

from imagecomposer.compose.bootloader import kernel_cmdline
from imagecomposer.compose.layout import Layout
from imagecomposer.families.selinux import write_mode
from imagecomposer.foundation.rootfs import Root
from imagecomposer.foundation.settings import SelinuxMode
from imagecomposer.spec.model import Spec


def with_mode(spec: Spec, mode: str) -> Spec:
    c = spec.customizations
    return attrs.evolve(spec, customizations=attrs.evolve(
        c, security=attrs.evolve(c.security, selinux=mode)))


def test_enforcing_differs_from_permissive_only_in_its_mode(spec: Spec, layout: Layout,
                                                             tmp_path: Path) -> None:
    permissive = kernel_cmdline(with_mode(spec, "permissive"), layout)
    enforcing = kernel_cmdline(with_mode(spec, "enforcing"), layout)
    assert "security=selinux selinux=1 enforcing=0" in permissive
    assert enforcing == permissive.replace("enforcing=0", "enforcing=1")
    config = tmp_path / "etc/selinux/config"
    config.parent.mkdir(parents=True)
    shipped = "# shipped by selinux-basics\nSELINUX=disabled\nSELINUXTYPE=default\n"
    texts = {}
    modes: tuple[SelinuxMode, ...] = ("permissive", "enforcing")
    for mode in modes:
        config.write_text(shipped)
        with Root(tmp_path) as root:
            write_mode(root, mode)
        texts[mode] = config.read_text()
    assert texts["enforcing"] == texts["permissive"].replace("SELINUX=permissive",
                                                             "SELINUX=enforcing")
    assert texts["enforcing"] == shipped.replace("SELINUX=disabled", "SELINUX=enforcing")

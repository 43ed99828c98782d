"""sshd options as a drop-in, and per-machine host keys.

Debian's sshd_config includes ``/etc/ssh/sshd_config.d/*.conf`` first and the first value
wins, so a drop-in overrides the defaults without editing the packaged file (which dpkg would
then treat as a modified conffile). openssh-server's postinst generated host keys in the build
tree; the installer removes them and this module makes ``ssh.service`` create fresh ones at
first boot, so no two machines share a host key.
"""

from __future__ import annotations

from pathlib import Path

from imagecomposer.compose.configure import paths
from imagecomposer.foundation.rootfs import Root
from imagecomposer.spec.model import Ssh

DROP_IN = "/etc/ssh/sshd_config.d/50-imagecomposer.conf"
KEYGEN_DROP_IN = "/etc/systemd/system/ssh.service.d/50-imagecomposer-host-keys.conf"


def sshd_installed(tree: Path) -> bool:
    return paths.installed(tree, "/usr/sbin/sshd")


def configure(tree: Path, ssh: Ssh) -> bool:
    """Write the sshd drop-in and the host-key unit drop-in; False if sshd is not installed."""
    if not sshd_installed(tree):
        return False
    yes_no = {True: "yes", False: "no"}
    paths.write(tree, DROP_IN,
                "# written by imagecomposer from the spec (customizations.ssh)\n"
                f"PermitRootLogin {yes_no[ssh.permit_root_login]}\n"
                f"PasswordAuthentication {yes_no[ssh.password_authentication]}\n"
                f"KbdInteractiveAuthentication {yes_no[ssh.password_authentication]}\n")
    paths.write(tree, KEYGEN_DROP_IN,
                "# host keys are made at first boot, never baked into the image\n"
                "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"
                "ExecStartPre=/usr/sbin/sshd -t\n")
    with Root(tree) as root:
        for name in root.listdir("/etc/ssh") if root.is_dir("/etc/ssh") else ():
            if name.startswith("ssh_host_"):
                root.remove(f"/etc/ssh/{name}")
    return True

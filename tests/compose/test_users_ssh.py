"""Users, groups, sudo, root password and SSH (real useradd --root on a fake tree)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecomposer.compose.configure import paths, ssh, users
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.spec.model import Ssh, User

root = pytest.mark.root
HASH = "$6$saltsalt$e0Hh4LVoFpyl2qZ8sJ0Bhvhl6k3Jp3Zx1XhXhN3d8Y1lZ0bWQbqkV9L9xv0YpC0Nq0p0y0Q0"


def shadow(tree: Path, name: str) -> list[str]:
    row = next(line for line in (tree / "etc/shadow").read_text().splitlines()
               if line.startswith(f"{name}:"))
    return row.split(":")


@root
def test_add_user_with_groups_password_shell_home_and_keys(fake_tree: Path) -> None:
    user = User(name="alice", uid=1500, groups=("adm", "developers"), password_hash=HASH,
                ssh_keys=("ssh-ed25519 AAAAC3Nza alice@laptop", "ssh-rsa AAAAB3 alice@old"),
                shell="/bin/sh")
    users.add_user(fake_tree, user)
    row = paths.passwd(fake_tree)["alice"]
    assert row[2] == "1500" and row[5] == "/home/alice" and row[6] == "/bin/sh"
    assert shadow(fake_tree, "alice")[1] == HASH
    groups = paths.groups(fake_tree)
    assert "alice" in groups["adm"][3].split(",")
    assert "alice" in groups["developers"][3].split(",")  # created because it was missing
    home = fake_tree / "home/alice"
    assert home.is_dir() and home.stat().st_uid == 1500
    assert (home / ".profile").read_text() == "# skel\n"
    keys = home / ".ssh/authorized_keys"
    assert keys.read_text() == "ssh-ed25519 AAAAC3Nza alice@laptop\nssh-rsa AAAAB3 alice@old\n"
    gid = int(row[3])
    for path, mode in ((home / ".ssh", 0o700), (keys, 0o600)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1500, gid, mode)


@root
def test_user_without_password_is_locked_and_sudo_needs_the_package(fake_tree: Path) -> None:
    with pytest.raises(ComposeError, match="has no sudo"):
        users.add_user(fake_tree, User(name="bob", sudo=True))
    (fake_tree / "usr/bin").mkdir(exist_ok=True)
    (fake_tree / "usr/bin/sudo").write_text("")
    users.add_user(fake_tree, User(name="carol", sudo=True))
    assert shadow(fake_tree, "carol")[1] == "!"
    drop_in = fake_tree / "etc/sudoers.d/90-imagecomposer-carol"
    assert drop_in.read_text().endswith("carol ALL=(ALL:ALL) NOPASSWD: ALL\n")
    assert drop_in.stat().st_mode & 0o777 == 0o440


@root
def test_existing_user_is_modified(fake_tree: Path) -> None:
    users.add_user(fake_tree, User(name="dave"))
    users.add_user(fake_tree, User(name="dave", groups=("users",), shell="/bin/zsh"))
    assert paths.passwd(fake_tree)["dave"][6] == "/bin/zsh"
    assert "dave" in paths.groups(fake_tree)["users"][3]


@root
def test_root_locked_unless_hash(fake_tree: Path) -> None:
    users.root_password(fake_tree, None)
    assert shadow(fake_tree, "root")[1].startswith("!")
    users.root_password(fake_tree, HASH)
    assert shadow(fake_tree, "root")[1] == HASH


def test_useradd_command_line(fake_tree: Path, fake_tool) -> None:  # type: ignore[no-untyped-def]
    log = fake_tree.parent / "argv"
    fake_tool("useradd", f'echo "$@" >> {log}')
    fake_tool("groupadd", f'echo groupadd "$@" >> {log}')
    users.add_user(fake_tree, User(name="erin", uid=2000, groups=("wheel",), home="/srv/erin"))
    lines = log.read_text().splitlines()
    assert lines[0] == f"groupadd --root {fake_tree} wheel"
    assert lines[1] == (f"--root {fake_tree} --shell /bin/bash --uid 2000 --groups wheel "
                        "--home-dir /srv/erin --password ! --create-home --user-group erin")


@pytest.mark.parametrize("name", ["Root", "1abc", "a b", "x" * 40])
def test_invalid_user_names(fake_tree: Path, name: str) -> None:
    with pytest.raises(ComposeError, match="invalid user name"):
        users.add_user(fake_tree, User(name=name))


def test_ssh_keys_for_missing_user(fake_tree: Path) -> None:
    with pytest.raises(ComposeError, match="does not exist"):
        users.authorized_keys(fake_tree, "nobody-here", ("ssh-ed25519 AAAA",))


def test_ssh_keys_for_root(fake_tree: Path) -> None:
    keys = users.authorized_keys(fake_tree, "root", ("ssh-ed25519 AAAA root@x",))
    assert keys == fake_tree / "root/.ssh/authorized_keys"
    assert keys.stat().st_mode & 0o777 == 0o600
    assert (fake_tree / "root/.ssh").stat().st_mode & 0o777 == 0o700
    assert keys.stat().st_uid == 0


def test_sshd_drop_in_and_host_keys(fake_tree: Path) -> None:
    assert ssh.configure(fake_tree, Ssh(permit_root_login=True, password_authentication=False))
    text = (fake_tree / "etc/ssh/sshd_config.d/50-imagecomposer.conf").read_text()
    assert "PermitRootLogin yes\n" in text
    assert "PasswordAuthentication no\n" in text
    assert not list((fake_tree / "etc/ssh").glob("ssh_host_*"))  # never baked into the image
    unit = (fake_tree / "etc/systemd/system/ssh.service.d/50-imagecomposer-host-keys.conf")
    assert "ExecStartPre=/usr/bin/ssh-keygen -A" in unit.read_text()


def test_sshd_not_installed(fake_tree: Path) -> None:
    (fake_tree / "usr/sbin/sshd").unlink()
    assert not ssh.configure(fake_tree, Ssh())
    assert not (fake_tree / "etc/ssh/sshd_config.d/50-imagecomposer.conf").exists()

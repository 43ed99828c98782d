"""Users, groups, passwords, sudo and SSH authorized keys.

Accounts are made with the host's ``useradd``/``usermod``/``groupadd`` with ``--root TREE``:
they chroot into the tree and edit only its passwd/shadow/group files, honour the image's
login.defs and /etc/skel, and need no tool inside the image. Passwords are crypt(3) hashes
only (the spec loader refuses plaintext); root stays locked unless the spec gives a hash.
The tools run with ``SOURCE_DATE_EPOCH`` = the build epoch: shadow's "last password change"
field is then that day, not the day of the build.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from imagecomposer.compose.configure import paths
from imagecomposer.foundation import runner
from imagecomposer.foundation.epoch import epoch_env, resolve
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.rootfs import Root
from imagecomposer.spec.model import User

NAME = re.compile(r"^[a-z_][a-z0-9_-]*[$]?$")
SUDOERS_DIR = "/etc/sudoers.d"


def ensure_groups(tree: Path, names: tuple[str, ...], *, epoch: int | None = None) -> list[str]:
    """Create the groups of ``names`` the image lacks; return the created ones."""
    existing = paths.groups(tree)
    created = []
    for name in names:
        if name in existing or name in created:
            continue
        if not NAME.match(name):
            raise ComposeError(f"invalid group name {name!r}")
        runner.run([runner.require("groupadd", "passwd"), "--root", str(tree), name],
                   env=epoch_env(resolve(epoch)), what=f"groupadd {name}")
        created.append(name)
    return created


def add_user(tree: Path, user: User, *, epoch: int | None = None) -> None:
    """Create (or update) ``user``: uid, groups, shell, home, password hash, sudo, SSH keys."""
    if not NAME.match(user.name) or len(user.name) > 32:
        raise ComposeError(f"invalid user name {user.name!r}")
    epoch = resolve(epoch)
    ensure_groups(tree, user.groups, epoch=epoch)
    exists = user.name in paths.passwd(tree)
    argv = [runner.require("usermod" if exists else "useradd", "passwd"),
            "--root", str(tree), "--shell", user.shell]
    if user.uid is not None:
        argv += ["--uid", str(user.uid)]
    if user.groups:
        argv += ["--groups", ",".join(user.groups)]
        if exists:
            argv.append("--append")
    if user.home is not None:
        argv += ["--home" if exists else "--home-dir", user.home]
        if exists:
            argv.append("--move-home")
    if not exists:
        argv += ["--password", "!", "--create-home", "--user-group"]
    argv.append(user.name)
    runner.run(argv, env=epoch_env(epoch), what=f"{'usermod' if exists else 'useradd'} {user.name}")
    if exists or user.password_hash is not None:  # a new user is created locked ("!")
        set_password_hash(tree, user.name, user.password_hash, epoch=epoch)
    if user.sudo:
        grant_sudo(tree, user.name)
    if user.ssh_keys:
        authorized_keys(tree, user.name, user.ssh_keys)


def grant_sudo(tree: Path, name: str) -> None:
    """Passwordless sudo through a 0440 drop-in; needs the sudo package in the image."""
    if not paths.installed(tree, "/usr/bin/sudo"):
        raise ComposeError(
            f"user {name!r} has sudo: true but the image has no sudo "
            "(add 'sudo' to customizations.packages.install)")
    paths.write(tree, f"{SUDOERS_DIR}/90-imagecomposer-{name}",
                f"# written by imagecomposer from the spec\n{name} ALL=(ALL:ALL) NOPASSWD: ALL\n",
                mode=0o440)


def root_password(tree: Path, password_hash: str | None, *, epoch: int | None = None) -> None:
    """Set root's password hash, or lock root's password when there is none."""
    set_password_hash(tree, "root", password_hash, epoch=epoch)


def set_password_hash(tree: Path, name: str, password_hash: str | None, *,
                      epoch: int | None = None) -> None:
    """Set ``name``'s crypt(3) hash, or lock the password when there is none.

    The hash goes to ``chpasswd -e`` on its standard input, never on a command line, where
    other users of the build host could read it in ``/proc`` while the tool runs.
    """
    env = epoch_env(resolve(epoch))
    if password_hash is None:
        runner.run([runner.require("usermod", "passwd"), "--root", str(tree), "--lock", name],
                   env=env, what=f"usermod --lock {name}")
        return
    runner.run([runner.require("chpasswd", "passwd"), "--root", str(tree), "--encrypted"],
               input=f"{name}:{password_hash}\n".encode(), secrets=[password_hash], env=env,
               what=f"chpasswd {name}")


def authorized_keys(tree: Path, name: str, keys: tuple[str, ...]) -> Path:
    """~/.ssh/authorized_keys (0600) in a 0700 ~/.ssh, owned by the user, as sshd demands."""
    row = paths.passwd(tree).get(name)
    if row is None:
        raise ComposeError(f"cannot add SSH keys: user {name!r} does not exist in the image")
    uid, gid, home = int(row[2]), int(row[3]), row[5]
    for key in keys:
        if "\n" in key.strip() or not key.strip():
            raise ComposeError(f"SSH key of {name!r} must be one non-empty line")
    with Root(tree) as root:
        # a planted ~/.ssh symlink is refused: following it would hand its target to the user
        root.mkdir(f"{home}/.ssh", 0o700, uid=uid, gid=gid, follow=False)
        home_dir = root.lstat(home)
        if uid != 0 and home.strip("/") and stat.S_ISDIR(home_dir.st_mode) \
                and home_dir.st_uid == 0:
            root.chown(home, uid, gid)  # a home made by --home without --create-home
        return root.write(f"{home}/.ssh/authorized_keys",
                          "".join(k.strip() + "\n" for k in keys), mode=0o600, uid=uid, gid=gid)

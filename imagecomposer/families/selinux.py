"""SELinux in an image tree, the same for every family: the mode and the file labels.

The family's OS profile adds the policy packages to the request when
``customizations.security.selinux`` is ``permissive`` or ``enforcing`` (Debian:
selinux-basics and selinux-policy-default; Fedora and Enterprise Linux:
selinux-policy-targeted). Last in the configuration stage, after every file is written,
:func:`configure`:

- writes ``SELINUX=<mode>`` into the image's ``/etc/selinux/config`` (the policy package
  installed it, with the policy's name in ``SELINUXTYPE``);
- labels the whole tree at build time (:func:`relabel`): the HOST's ``setfiles``
  (policycoreutils) runs on the tree (``-r TREE``) with the image's own ``file_contexts``
  and checks every context against the image's own binary policy (``-c``). The host's tool,
  not the image's in the sandbox: writing a ``security.selinux`` attribute needs
  CAP_SYS_ADMIN on a host where SELinux is not the active module, and the sandbox drops it.
  The context files and the policy are copied out of the tree (read through
  :class:`~imagecomposer.foundation.rootfs.Root`: a link planted there cannot make setfiles
  read a host file), and nothing of the image runs on the host.

The labels travel into the disk image with the filesystem (``mkfs.ext4 -d``, mksquashfs and
mkfs.erofs copy extended attributes; the xfs prototype file cannot, which validation
refuses). The kernel command line gets ``security=selinux selinux=1 enforcing=0|1``
(:func:`imagecomposer.compose.bootloader.kernel_cmdline`).
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.rootfs import Root
from imagecomposer.foundation.settings import SelinuxMode

log = logging.getLogger("imagecomposer.selinux")

CONFIG = "/etc/selinux/config"
# the text files setfiles reads for one file_contexts: the compiled .bin files are not
# copied (they hold the image's PCRE2 build; the host's libselinux compiles the text)
CONTEXT_FILES = ("file_contexts", "file_contexts.homedirs", "file_contexts.local",
                 "file_contexts.subs", "file_contexts.subs_dist")
_MODE_LINE = re.compile(r"^\s*SELINUX\s*=.*$", re.MULTILINE)
_TYPE_LINE = re.compile(r"^\s*SELINUXTYPE\s*=\s*(\S+)\s*$", re.MULTILINE)
_POLICY_FILE = re.compile(r"^policy\.(\d+)$")


def policy_name(root: Root, default: str) -> str:
    """The policy ``/etc/selinux/config`` names (``SELINUXTYPE``), else ``default``."""
    found = _TYPE_LINE.search(root.read_text(CONFIG)) if root.is_file(CONFIG) else None
    return found.group(1) if found else default


def contexts_path(policy: str) -> str:
    return f"/etc/selinux/{policy}/contexts/files/file_contexts"


def write_mode(root: Root, mode: SelinuxMode) -> None:
    """``SELINUX=<mode>`` in the image's config (its other lines kept)."""
    text = root.read_text(CONFIG)
    line = f"SELINUX={mode}"
    text = _MODE_LINE.sub(line, text) if _MODE_LINE.search(text) else f"{line}\n{text}"
    root.write(CONFIG, text, mode=root.stat(CONFIG).st_mode & 0o7777)


def configure(tree: Path, mode: SelinuxMode, *, default_policy: str, packages: str,
              timeout: float | None = None, parallel: int = 1) -> str:
    """Set the mode and label the tree; what was done: "none" (disabled, no policy in the
    image), "config" (disabled written into the config) or "setfiles" (mode and labels).

    ``packages``: what to add when the image has no policy, for the error message."""
    with Root(tree) as root:
        if mode == "disabled":
            if not root.is_file(CONFIG):
                return "none"
            write_mode(root, mode)
            return "config"
        if not root.is_file(CONFIG):
            raise ComposeError(f"SELinux {mode} needs a policy, but the image has no "
                               f"{CONFIG}: add {packages} to customizations.packages.install")
        policy = policy_name(root, default_policy)
        if not root.is_file(contexts_path(policy)):
            raise ComposeError(f"SELinux {mode}: policy {policy} is not installed "
                               f"({contexts_path(policy)} is missing): add {packages} to "
                               "customizations.packages.install")
        write_mode(root, mode)
    relabel(tree, policy, timeout=timeout, parallel=parallel)
    return "setfiles"


def relabel(tree: Path, policy: str, *, timeout: float | None = None,
            parallel: int = 1) -> None:
    """Label every file of ``tree`` with the host's ``setfiles`` against the image's
    ``file_contexts`` of ``policy``, each context checked against the image's binary
    policy; ``parallel`` setfiles threads."""
    setfiles = runner.require("setfiles", "policycoreutils")
    tree = tree.absolute()
    with tempfile.TemporaryDirectory(prefix="imagecomposer-selinux-") as tmp:
        work = Path(tmp)
        base = contexts_path(policy)
        with Root(tree) as root:
            for name in CONTEXT_FILES:
                path = f"{base.rsplit('/', 1)[0]}/{name}"
                if root.is_file(path):
                    (work / name).write_bytes(root.read_bytes(path))
            binary = _binary_policy(root, policy)
            check: list[str] = []
            if binary is not None:
                (work / "policy").write_bytes(root.read_bytes(binary))
                check = ["-c", str(work / "policy")]
        # -m: every mount counts (a host without SELinux marks none "seclabel"); -F: reset
        # customizable types too; -r: the tree is the root the contexts' paths start at
        runner.run([setfiles, "-m", "-F", "-T", str(max(1, parallel)), "-r", str(tree),
                    *check, str(work / "file_contexts"), str(tree)],
                   timeout=timeout, what=f"setfiles (SELinux labels of the {policy} policy)")


def _binary_policy(root: Root, policy: str) -> str | None:
    """The image's binary policy with the highest version (``policy.33``), if any."""
    directory = f"/etc/selinux/{policy}/policy"
    if not root.is_dir(directory):
        return None
    found = [(int(m.group(1)), name) for name in root.listdir(directory)
             if (m := _POLICY_FILE.match(name)) and root.is_file(f"{directory}/{name}")]
    return f"{directory}/{max(found)[1]}" if found else None

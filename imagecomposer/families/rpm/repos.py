"""dnf repositories inside an RPM-family image: the ones it was built from, with their keys.

The counterpart of the Debian side's APT sources. A distribution's release package
(fedora-repos, rocky-repos, azurelinux-repos) already ships ``/etc/yum.repos.d/*.repo`` for
the base OS, usually with a mirror list, so the base repositories are written only when the
image has no ``.repo`` file of its own (a profile-less OS). The spec's extra repositories are
always written, one ``imagecomposer-<name>.repo`` each, with the dnf priority, the
allow-list as ``includepkgs`` and the signing keys copied (armored) to
``/etc/pki/rpm-gpg/imagecomposer-<name>-<n>.asc``. Repositories reached through a local path
or ``file://`` URL of the build host are skipped: the image cannot reach them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from imagecomposer.families.rpm.loader import RpmSource
from imagecomposer.families.rpm.provider import RpmProvider
from imagecomposer.foundation.rootfs import Root

log = logging.getLogger("imagecomposer.rpm")

REPOS_DIR = "/etc/yum.repos.d"
KEYS_DIR = "/etc/pki/rpm-gpg"
PREFIX = "imagecomposer-"


def repo_file(source: RpmSource, keys: list[str]) -> str:
    """The ``.repo`` text of one repository (``keys``: paths inside the image)."""
    lines = [f"[{source.name}]", f"name={source.name} (added by imagecomposer)",
             f"baseurl={source.baseurl}", "enabled=1",
             f"gpgcheck={0 if source.trusted or not source.gpgcheck else 1}",
             f"repo_gpgcheck={1 if source.repo_gpgcheck and not source.trusted else 0}",
             f"priority={source.priority}"]
    if keys and not source.trusted:
        lines.append("gpgkey=" + " ".join(f"file://{k}" for k in keys))
    if source.allow:
        lines.append("includepkgs=" + " ".join(source.allow))
    return "\n".join(lines) + "\n"


def _own_repo_files(root: Root) -> bool:
    return root.is_dir(REPOS_DIR) and any(
        n.endswith(".repo") and not n.startswith(PREFIX) for n in root.listdir(REPOS_DIR))


def write_repo_files(tree: Path, provider: RpmProvider) -> list[Path]:
    """Write the ``.repo`` files (and keys) into ``tree``; the host paths written."""
    tree.mkdir(parents=True, exist_ok=True)
    with Root(tree) as root:
        return _write_repo_files(root, provider)


def _write_repo_files(root: Root, provider: RpmProvider) -> list[Path]:
    base_shipped = _own_repo_files(root)
    extra = {r.name for r in provider.request.repositories}
    written: list[Path] = []
    for name in [r.name for r in provider.repositories()]:
        source = provider.source(name)
        if source.baseurl.startswith("file:"):
            log.info("not adding repository %s to the image: %s is local to the build host",
                     name, source.baseurl)
            continue
        if name not in extra and base_shipped:
            continue
        keys: list[str] = []
        if source.keyring is not None and not source.trusted:
            for index, armored in enumerate(source.keyring.armored, 1):
                inside = f"{KEYS_DIR}/{PREFIX}{name}-{index}.asc"
                root.copy_file_in(armored, inside, mode=0o644)
                keys.append(inside)
        written.append(root.write(f"{REPOS_DIR}/{PREFIX}{name}.repo",
                                  repo_file(source, keys), mode=0o644))
    return written

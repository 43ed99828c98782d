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
import shutil
from pathlib import Path

from imagecomposer.providers.rpm.loader import RpmSource
from imagecomposer.providers.rpm.provider import RpmProvider

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


def _own_repo_files(directory: Path) -> bool:
    return any(not p.name.startswith(PREFIX) for p in directory.glob("*.repo"))


def write_repo_files(tree: Path, provider: RpmProvider) -> list[Path]:
    """Write the ``.repo`` files (and keys) into ``tree``; the host paths written."""
    directory = tree / REPOS_DIR.lstrip("/")
    base_shipped = directory.is_dir() and _own_repo_files(directory)
    extra = {r.name for r in provider.spec.repositories}
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
                host = tree / inside.lstrip("/")
                host.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(armored, host)
                host.chmod(0o644)
                keys.append(inside)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{PREFIX}{name}.repo"
        path.write_text(repo_file(source, keys))
        path.chmod(0o644)
        written.append(path)
    return written

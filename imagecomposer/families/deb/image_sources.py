"""APT sources inside the image: the repositories the image was built from, with their keys.

Taken from the lock's ``repositories`` (so they are exactly the mirror and suites the packages
came from) in deb822 form, one ``.sources`` file per repository, ``Signed-By`` naming a keyring
inside the image. The base distribution's keyring is the one its keyring package installs
(debian-archive-keyring) when present, otherwise the configured provider keyring is copied in;
extra spec repositories get their own key file copied to /etc/apt/keyrings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.foundation.rootfs import Root, paths
from imagecomposer.lock import Lock, LockedRepository
from imagecomposer.spec.model import Spec

SOURCES_DIR = "/etc/apt/sources.list.d"
KEYRINGS_DIR = "/etc/apt/keyrings"


def _keyring_in_image(tree: Path, repo: LockedRepository, key: Path | None) -> str | None:
    if repo.trusted and key is None:
        return None
    if key is None:
        raise ComposeError(f"no keyring known for repository {repo.name!r} ({repo.url})")
    with Root(tree) as root:
        if str(key).startswith("/usr/share/keyrings/") and root.is_file(str(key)):
            return str(key)  # installed by the keyring package: kept up to date by apt
        suffix = ".asc" if key.read_bytes()[:5] == b"-----" else ".gpg"
        target = f"{KEYRINGS_DIR}/imagecomposer-{repo.name}{suffix}"
        root.copy_file_in(key, target, mode=0o644)
    return target


def sources_file(repo: LockedRepository, keyring: str | None) -> str:
    lines = ["# written by imagecomposer from the build lock", "Types: deb", f"URIs: {repo.url}"]
    if repo.suite:
        lines.append(f"Suites: {repo.suite}")
        lines.append(f"Components: {' '.join(repo.components or ('main',))}")
    else:
        lines.append("Suites: ./")
    if keyring:
        lines.append(f"Signed-By: {keyring}")
    if repo.trusted:
        lines.append("Trusted: yes")
    return "\n".join(lines) + "\n"


def configure(tree: Path, lock: Lock, keys: Mapping[str, Path | None]) -> list[Path]:
    """Write a .sources file per deb repository of ``lock``; ``keys`` maps repository name to
    its keyring on the host. Returns the files written (none if apt is not installed)."""
    if not paths.installed(tree, "/usr/bin/apt-get"):
        return []
    written = []
    for repo in lock.repositories:
        if repo.kind != "deb" or repo.url.startswith("file:"):
            continue  # a build-local repository means nothing on the running machine
        keyring = _keyring_in_image(tree, repo, keys.get(repo.name))
        written.append(paths.write(tree, f"{SOURCES_DIR}/{repo.name}.sources",
                                   sources_file(repo, keyring)))
    legacy = "/etc/apt/sources.list"
    with Root(tree) as root:
        if written and root.is_file(legacy) and not root.read_text(legacy).strip():
            root.remove(legacy)
    return written


def repository_keys(spec: Spec, lock: Lock, config: Config) -> dict[str, Path | None]:
    """The keyring on the host of each repository of ``lock``: an extra repository's own
    ``key``, else the configured provider keyring of the base OS."""
    keys: dict[str, Path | None] = {}
    provider = config.providers.get(lock.os)
    extra = {r.name: r for r in spec.repositories}
    for repo in lock.repositories:
        if repo.name in extra:
            keys[repo.name] = extra[repo.name].key
        elif provider is not None:
            keys[repo.name] = provider.keyring
    return keys

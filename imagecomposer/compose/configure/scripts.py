"""User scripts from the spec, run in the compose sandbox on the image tree.

When they run:

- ``pre_install``: in the compose stage, between the two phases of the installation: on the
  tree holding only the family's bootstrap set (Debian: the Essential and Priority: required
  packages with their dependencies, installed and configured: debootstrap's ``minbase``;
  RPM: filesystem, setup, basesystem and the ``/bin/sh`` provider with their dependencies),
  before the rest of the lock (the spec's packages) is installed. :class:`PreInstall` is
  what they see; the installed-tree cache is keyed by it too
  (:meth:`imagecomposer.compose.composer.Composer.tree_key`). Without ``pre_install``
  scripts the lock is installed in one phase, as it always was;
- ``post_install``: in the configuration stage, after every customization, before the
  initramfs and the bootloader.

Each script runs in the sandbox of :mod:`imagecomposer.foundation.sandbox`: the image tree is
the root (``pivot_root``, no host path reachable), the capabilities are reduced (no mount,
no device nodes, no module, no sysctl), and there is no network unless the spec sets
``customizations.scripts.network: true`` (then the host's network namespace is shared). The
script FILE is copied to ``/run/imagecomposer/scripts/NAME`` (a read-only tmpfs that exists
only for the run, so nothing is left in the image; the spec's directory itself is not
visible) and executed with the interpreter of its ``#!`` line (``sh`` without one).
Environment:

==============================  ================================================
``IMAGECOMPOSER_IMAGE_NAME``    ``image.name``
``IMAGECOMPOSER_IMAGE_VERSION`` ``image.version``
``IMAGECOMPOSER_OS``            ``image.base.os`` (debian)
``IMAGECOMPOSER_OS_VERSION``    ``image.base.version`` (12)
``IMAGECOMPOSER_ARCH``          ``image.base.arch`` (x86_64)
``IMAGECOMPOSER_STAGE``         ``pre-install`` or ``post-install``
``IMAGECOMPOSER_ROOT``          ``/``: the image root, as seen by the script
``IMAGECOMPOSER_SCRIPT``        the script's file name in the spec
``SOURCE_DATE_EPOCH``           the build epoch (:mod:`imagecomposer.foundation.epoch`)
==============================  ================================================

A script that exits non-zero stops the build with :class:`ScriptFailed` ("Script returned
non-zero exit code N: post-install script NAME") and the tail of its output.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs

from imagecomposer.foundation.epoch import epoch_env, resolve
from imagecomposer.foundation.errors import ComposeError, ScriptFailed
from imagecomposer.foundation.fingerprint import fingerprint
from imagecomposer.foundation.sandbox import run_in_chroot
from imagecomposer.spec.model import Customizations, Image, Scripts, Spec

MOUNT = "/run/imagecomposer/scripts"
RunInChroot = Callable[..., object]
# Run with the interpreter of the #! line (the copy need not be executable); no #! line means
# a POSIX shell script.
RUN_SCRIPT = (
    'IFS= read -r first < "$1" || true\n'
    'case "$first" in "#!"*) exec ${first#??} "$1";; *) exec sh "$1";; esac'
)


def environment(spec: Spec, stage: str, script: Path) -> dict[str, str]:
    image = spec.image
    return {
        "IMAGECOMPOSER_IMAGE_NAME": image.name,
        "IMAGECOMPOSER_IMAGE_VERSION": image.version,
        "IMAGECOMPOSER_OS": image.base.os,
        "IMAGECOMPOSER_OS_VERSION": image.base.version,
        "IMAGECOMPOSER_ARCH": image.base.arch,
        "IMAGECOMPOSER_STAGE": stage,
        "IMAGECOMPOSER_ROOT": "/",
        "IMAGECOMPOSER_SCRIPT": script.name,
    }


@attrs.frozen
class PreInstall:
    """A spec's ``pre_install`` scripts and everything they see: what the installed tree
    depends on besides the lock and the epoch when a spec has such scripts. The scripts
    stand for their content (a fingerprint hashes a path's file), their names for what the
    scripts are called in the sandbox and ``IMAGECOMPOSER_SCRIPT``."""

    image: Image  # the IMAGECOMPOSER_* environment
    scripts: tuple[Path, ...]
    names: tuple[str, ...]
    network: bool = False  # customizations.scripts.network

    @classmethod
    def of(cls, spec: Spec) -> PreInstall | None:
        """``spec``'s pre_install scripts, None when it has none."""
        found = spec.customizations.scripts
        if not found.pre_install:
            return None
        return cls(spec.image, found.pre_install, tuple(p.name for p in found.pre_install),
                   found.network)

    @property
    def key(self) -> str:
        """A digest of the scripts' content, names and environment (the tree cache key's
        part)."""
        return fingerprint(self)[:16]

    def spec(self) -> Spec:
        """A spec holding exactly what the scripts see."""
        return Spec(image=self.image, customizations=Customizations(
            scripts=Scripts(pre_install=self.scripts, network=self.network)))

    def run(self, tree: Path, *, timeout: float | None = None, epoch: int | None = None,
            chroot: RunInChroot = run_in_chroot) -> None:
        """Run the scripts in order in ``tree`` (the bootstrapped tree)."""
        run_scripts(tree, self.spec(), "pre-install", self.scripts, chroot=chroot,
                    timeout=timeout, epoch=epoch)


def run_scripts(tree: Path, spec: Spec, stage: str, scripts: tuple[Path, ...], *,
                chroot: RunInChroot = run_in_chroot, timeout: float | None = None,
                epoch: int | None = None) -> None:
    """Run ``scripts`` in order in ``tree`` for ``stage`` (pre-install or post-install),
    with ``SOURCE_DATE_EPOCH`` = ``epoch`` (default: the build epoch) in their environment."""
    env = epoch_env(resolve(epoch))
    for script in scripts:
        if not script.is_file():
            raise ComposeError(f"{stage} script {script} does not exist")
        inner = f"{MOUNT}/{script.name}"
        chroot(tree, ["sh", "-c", RUN_SCRIPT, "script", inner],
               env={**env, **environment(spec, stage, script)}, copies=[(script, inner)],
               network=spec.customizations.scripts.network, error=ScriptFailed,
               what=f"{stage} script {script.name}", timeout=timeout)

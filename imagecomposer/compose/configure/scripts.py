"""User scripts from the spec, run in the compose sandbox on the image tree.

When they run:

- ``pre_install``: after the packages are installed (or the installed tree is restored from
  the cache) and before any customization (users, files, services, network ...);
- ``post_install``: after every customization, before the initramfs and the bootloader.

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

from imagecomposer.foundation.epoch import epoch_env, resolve
from imagecomposer.foundation.errors import ComposeError, ScriptFailed
from imagecomposer.foundation.sandbox import run_in_chroot
from imagecomposer.spec.model import Spec

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

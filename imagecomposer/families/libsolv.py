"""The libsolv Python module, checked for what imagecomposer needs of it.

The ``solv`` wheel on PyPI is built without Debian support (``setdisttype(DISTTYPE_DEB)``
fails and ``Repo.add_debpackages`` is missing). Importing the resolver checks once and
fails with the command that installs a suitable build.
"""

from __future__ import annotations

import functools
from types import ModuleType

from imagecomposer.foundation.errors import ImageComposerError

INSTALL_HINT = ("build it with Debian support: scripts/build-solv-wheel.sh .wheelhouse && "
                "pip install --find-links .wheelhouse --force-reinstall solv==0.7.39.post1 "
                "(see README, 'Installing libsolv')")


class LibsolvUnsupported(ImageComposerError):
    """The installed libsolv Python module lacks a feature imagecomposer needs."""


@functools.cache
def solv() -> ModuleType:
    """The ``solv`` module, after checking it supports both Debian and RPM pools."""
    try:
        import solv as module
    except ImportError as exc:
        raise LibsolvUnsupported(f"libsolv's Python module is not installed: {INSTALL_HINT}"
                                 ) from exc
    pool = module.Pool()
    # setdisttype returns the previous type; a negative value means "not compiled in".
    for name in ("DISTTYPE_DEB", "DISTTYPE_RPM"):
        if pool.setdisttype(getattr(module.Pool, name)) < 0:
            family = name.removeprefix("DISTTYPE_").lower()
            raise LibsolvUnsupported(f"libsolv was built without {family} support: "
                                     + INSTALL_HINT)
    if not hasattr(module.Repo, "add_debpackages"):
        raise LibsolvUnsupported("libsolv lacks Repo.add_debpackages: " + INSTALL_HINT)
    checked: ModuleType = module
    return checked

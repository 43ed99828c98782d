"""imagecomposer: compose customized, bootable, signed OS images from a YAML build spec.

The library is the whole product; the CLI only wires it. The composable objects are
importable from here and loaded on first use, so ``import imagecomposer`` stays cheap (see
docs/api.md for each one's constructor, methods and a Jupyter example)::

    Spec, validate, Config, load_config        the build spec and the global configuration
    family, family_for                         the package family strategies (deb, rpm)
    provider_for, Resolver, Resolution, Lock   repository metadata, resolution, the lockfile
    PackageCache, ImageCache, Caches           the package store, the image cache, all caches
    Composer, Signer, Exporter                 tree and disk, signatures, formats and outputs
    ImagePipeline, BuildOptions, BuildReport,  the default build (all stages), several at once,
    build, build_many, BuildResult,            a second build compared with the first
    check_reproducible
    Image, compare                             offline inspection and comparison

(``boot`` lives in :mod:`imagecomposer.boot`: ``from imagecomposer.boot import boot``; the
name ``imagecomposer.boot`` is the subpackage.)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Spec": "imagecomposer.spec",
    "validate": "imagecomposer.families",
    "Config": "imagecomposer.config",
    "load_config": "imagecomposer.config",
    "family": "imagecomposer.families",
    "family_for": "imagecomposer.families",
    "provider_for": "imagecomposer.families",
    "Resolver": "imagecomposer.resolver.resolver",
    "Resolution": "imagecomposer.resolver.resolution",
    "Lock": "imagecomposer.lock",
    "PackageCache": "imagecomposer.cache",
    "ImageCache": "imagecomposer.cache.images",
    "Caches": "imagecomposer.cache",
    "Composer": "imagecomposer.compose.composer",
    "Signer": "imagecomposer.sign",
    "Exporter": "imagecomposer.export",
    "ImagePipeline": "imagecomposer.pipeline.build",
    "BuildOptions": "imagecomposer.pipeline.context",
    "BuildReport": "imagecomposer.pipeline.build",
    "build": "imagecomposer.pipeline.build",
    "check_reproducible": "imagecomposer.pipeline.build",
    "build_many": "imagecomposer.cluster.api",
    "BuildResult": "imagecomposer.pipeline.many",
    "Image": "imagecomposer.inspect",
    "compare": "imagecomposer.inspect",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'imagecomposer' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    """The lazy names too, so tab completion in a notebook offers them."""
    return sorted({*globals(), *_EXPORTS})

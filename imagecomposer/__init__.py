"""imagecomposer: compose customized, bootable, signed OS images from a YAML build spec.

The composable objects, importable from here (loaded on first use, so ``import
imagecomposer`` stays cheap)::

    Spec, load_config, provider_for, Resolver, PackageCache, ImageCache, Composer,
    Signer, Exporter, ImagePipeline, BuildOptions, build, build_many, BuildResult, Image,
    compare

(``boot`` lives in :mod:`imagecomposer.boot`: ``from imagecomposer.boot import boot``.)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Spec": "imagecomposer.spec",
    "load_config": "imagecomposer.config",
    "provider_for": "imagecomposer.families",
    "Resolver": "imagecomposer.resolver.resolver",
    "PackageCache": "imagecomposer.cache",
    "ImageCache": "imagecomposer.cache.images",
    "Composer": "imagecomposer.compose.composer",
    "Signer": "imagecomposer.sign",
    "Exporter": "imagecomposer.export",
    "ImagePipeline": "imagecomposer.pipeline.build",
    "BuildOptions": "imagecomposer.pipeline.context",
    "build": "imagecomposer.pipeline.build",
    "build_many": "imagecomposer.pipeline.many",
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

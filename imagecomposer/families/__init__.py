"""Package providers: one per OS family, chosen by the global configuration.

:func:`provider_for` dispatches on ``config.providers[spec.image.base.os].kind``; the
providers themselves live in ``imagecomposer.families.<kind>``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagecomposer.config.model import Config
from imagecomposer.families.deb import DebProvider
from imagecomposer.families.request import PackageRequest, as_request
from imagecomposer.foundation.errors import ProviderNotConfigured
from imagecomposer.spec.model import Spec

if TYPE_CHECKING:
    from imagecomposer.families.base import Provider


def provider_for(spec: Spec | PackageRequest, config: Config, *,
                 cache_dir: Path | None = None,
                 events: Callable[[Any], None] | None = None) -> Provider:
    """The provider for a spec's (or a package request's) base OS; ``cache_dir`` overrides
    the metadata cache."""
    request = as_request(spec)
    os_name = request.os
    settings = config.providers.get(os_name)
    if settings is None:
        raise ProviderNotConfigured(
            f"Provider '{os_name}' is not configured in the global configuration "
            f"(configured: {', '.join(sorted(config.providers)) or 'none'}; add a "
            f"providers.{os_name} section with kind, mirror and keyring)")
    if settings.kind == "deb":

        return DebProvider(request, config, cache_dir=cache_dir, events=events)
    if settings.kind == "rpm":
        # imported by name: the rpm provider is developed separately and may be absent
        try:
            module = importlib.import_module("imagecomposer.families.rpm")
        except ImportError as exc:
            raise ProviderNotConfigured(
                f"Provider '{os_name}' has kind rpm, which this build does not support") \
                from exc
        factory = module.RpmProvider
        extra = ({"events": events}
                 if "events" in inspect.signature(factory).parameters else {})
        provider: Provider = factory(request, config, cache_dir=cache_dir, **extra)
        return provider
    raise ProviderNotConfigured(f"Provider '{os_name}' has unknown kind {settings.kind!r}")

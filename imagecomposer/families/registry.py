"""The family registry: the one place that knows which package families exist.

``family(kind)`` is the :class:`~imagecomposer.families.family.Family` of a lock, a
repository or a provider section (``deb``, ``rpm``); ``family_for(os, config)`` the family
of a base OS, by its provider section in the global configuration (``providers.<os>.kind``).
Every family-dependent step of a build asks one of them and calls the family's method: no
code outside the family modules compares a family's name.

The shipped families are registered at import; :func:`register` adds another (a third
family, or a test's), :func:`unregister` removes it again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagecomposer.config.model import Config
from imagecomposer.families.base import Provider
from imagecomposer.families.deb.family import DebFamily
from imagecomposer.families.family import Family
from imagecomposer.families.request import PackageRequest
from imagecomposer.families.rpm.family import RpmFamily
from imagecomposer.foundation.errors import ConfigError, ProviderNotConfigured
from imagecomposer.spec.model import Spec

_FAMILIES: dict[str, Family] = {}


def register(new: Family, *, replace: bool = False) -> Family:
    """Make ``new`` the family of its ``kind``; refuses to shadow one unless ``replace``."""
    if new.kind in _FAMILIES and not replace:
        raise ConfigError(f"a package family {new.kind!r} is already registered "
                          f"({_FAMILIES[new.kind]!r})")
    _FAMILIES[new.kind] = new
    return new


def unregister(kind: str) -> None:
    """Forget the family ``kind`` (no error if it is not registered)."""
    _FAMILIES.pop(kind, None)


def families() -> tuple[Family, ...]:
    """Every registered family, in registration order (deb, rpm, then added ones)."""
    return tuple(_FAMILIES.values())


def family(kind: str) -> Family:
    """The family ``kind`` names; a ConfigError naming the known ones."""
    found = _FAMILIES.get(kind)
    if found is None:
        raise ConfigError(f"unknown package family {kind!r} (known: "
                          f"{', '.join(_FAMILIES) or 'none'})")
    return found


def family_for(os_name: str, config: Config) -> Family:
    """The family of the base OS ``os_name``: its provider section's ``kind``."""
    settings = config.providers.get(os_name)
    if settings is None:
        raise ProviderNotConfigured(
            f"Provider '{os_name}' is not configured in the global configuration "
            f"(configured: {', '.join(sorted(config.providers)) or 'none'}; add a "
            f"providers.{os_name} section with kind, mirror and keyring)")
    if settings.kind not in _FAMILIES:
        raise ProviderNotConfigured(f"Provider '{os_name}' has unknown kind "
                                    f"{settings.kind!r} (known: {', '.join(_FAMILIES)})")
    return _FAMILIES[settings.kind]


def request_for(source: Spec | PackageRequest, config: Config) -> PackageRequest:
    """``source`` itself, or the package request its base OS's family makes of the spec."""
    if isinstance(source, PackageRequest):
        return source
    return family_for(source.image.base.os, config).request(source)


def provider_for(spec: Spec | PackageRequest, config: Config, *,
                 cache_dir: Path | None = None,
                 events: Callable[[Any], None] | None = None) -> Provider:
    """The provider for a spec's (or a package request's) base OS; ``cache_dir`` overrides
    the metadata cache."""
    request = request_for(spec, config)
    return family_for(request.os, config).provider(request, config, cache_dir=cache_dir,
                                                   events=events)


for _shipped in (DebFamily(), RpmFamily()):
    register(_shipped)

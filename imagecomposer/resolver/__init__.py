"""Dependency resolution with libsolv → :class:`Resolution` (``.lock``: a :class:`Lock`)."""

from __future__ import annotations

from imagecomposer.lock import Lock, LockedPackage, LockedRepository
from imagecomposer.resolver.resolution import Reason, Resolution
from imagecomposer.resolver.resolver import Resolver

__all__ = ["Lock", "LockedPackage", "LockedRepository", "Reason", "Resolution", "Resolver"]


def __getattr__(name: str) -> object:
    # Resolver imports the providers, which import the lock from this package: load lazily.
    if name == "Resolver":

        return Resolver
    raise AttributeError(name)

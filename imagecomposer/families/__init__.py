"""Package families: one strategy class per family (deb, rpm), found through one registry.

:func:`family` gives the family a lock or repository names, :func:`family_for` the family
of a base OS (``config.providers[os].kind``), :func:`provider_for` that family's provider of
a spec's repository metadata, :func:`validate` the whole validation of a spec (its own checks
and its family's). The families live in ``imagecomposer.families.<kind>``; see
:mod:`imagecomposer.families.family` for what a family owns.
"""

from imagecomposer.families.family import Family, InstalledPackage, TreeContext
from imagecomposer.families.registry import (
    families,
    family,
    family_for,
    provider_for,
    register,
    request_for,
    unregister,
)
from imagecomposer.families.validation import validate, validate_file

__all__ = ["Family", "InstalledPackage", "TreeContext", "families", "family", "family_for",
           "provider_for", "register", "request_for", "unregister", "validate", "validate_file"]

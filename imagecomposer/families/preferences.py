"""Why a package is in a resolution, and what a family's own tool would install.

The resolver (:mod:`imagecomposer.resolver`) reports a :class:`Reason` for every package of
a resolution; a family (deb: the apt model) may give :class:`Preferences` -- the set its own
tool would install, with a reason for each -- that libsolv then checks. Both live here, in
the families layer, because the families produce them and the resolver reads them.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

ReasonKind = Literal["spec", "profile", "dependency", "recommended", "other"]


@attrs.frozen
class Reason:
    kind: ReasonKind
    by: str | None = None  # the package whose dependency pulled this one in
    dep: str | None = None  # that dependency as written ("debconf (>= 0.5) | debconf-2.0")
    detail: str = ""  # dependency: how a provider was chosen; profile: which part
    rule: str = ""  # the rule that chose among alternatives ("first alternative")

    def __str__(self) -> str:
        if self.kind == "spec":
            return "requested in the spec (customizations.packages.install)"
        if self.kind == "profile":
            return f"requested by the OS profile ({self.detail})"
        if self.kind in ("dependency", "recommended"):
            field = "Recommends" if self.kind == "recommended" else "Depends"
            if self.rule:
                text = f"{self.rule} of {self.by}: {self.dep}"
                if self.kind == "recommended":
                    text = f"{self.rule} of {self.by} ({field}): {self.dep}"
            else:
                verb = "recommended" if self.kind == "recommended" else "required"
                text = f"{verb} by {self.by} ({self.dep})"
            return f"{text} ({self.detail})" if self.detail else text
        return self.detail or "chosen by the solver"


@attrs.frozen
class Preferences:
    """What a family's own tool would install (apt for deb), for libsolv to check.

    ``exact``: resolve to exactly ``install`` (libsolv checks it is consistent and explains
    when not); otherwise the tool would have needed a repair step it does not model, and
    ``install`` is only favoured.
    """

    install: tuple[Any, ...]  # libsolv solvables
    reasons: dict[str, Reason]
    exact: bool = True
    note: str = ""  # why not exact

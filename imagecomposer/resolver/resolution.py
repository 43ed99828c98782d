"""The typed result of a resolution: the lock plus why each package is in it.

``Resolution.explain(name)`` walks the recorded reasons up to a request ("openssh-server
was requested in the spec"), so ``imagecomposer resolve SPEC --explain libc6`` and a Jupyter
cell give the same readable chain. ``_repr_html_`` renders a table in notebooks.
"""

from __future__ import annotations

import html
from typing import Any, Literal

import attrs

from imagecomposer.resolver.lock import Lock

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


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"


@attrs.frozen
class Resolution:
    lock: Lock
    reasons: dict[str, Reason]
    seconds: float = 0.0  # time spent (metadata load + solve)

    @property
    def download_size(self) -> int:
        return sum(p.size for p in self.lock.packages)

    def explain(self, name: str) -> str:
        """Why ``name`` is in the resolution, as a chain of reasons up to a request."""
        if self.lock.package(name) is None:
            return f"{name} is not part of this resolution"
        lines: list[str] = []
        seen: set[str] = set()
        current: str | None = name
        while current is not None and current not in seen:
            seen.add(current)
            package = self.lock.package(current)
            version = f" {package.version}" if package is not None else ""
            reason = self.reasons.get(current, Reason("other"))
            lines.append(f"{'  ' * (len(lines))}{current}{version}: {reason}")
            current = reason.by if reason.kind in ("dependency", "recommended") else None
        return "\n".join(lines)

    def __repr__(self) -> str:
        lock = self.lock
        head = (f"<Resolution {lock.os} {lock.version} {lock.arch}: {len(lock.packages)} "
                f"packages, {_size(self.download_size)} to download, from "
                f"{len(lock.repositories)} repositories in {self.seconds:.2f} s>")
        rows = [f"  {p.name} {p.version} [{p.repository}]" for p in lock.packages[:12]]
        if len(lock.packages) > 12:
            rows.append(f"  ... {len(lock.packages) - 12} more (install order)")
        return "\n".join([head, *rows])

    def _repr_html_(self) -> str:
        lock = self.lock
        rows = "".join(
            f"<tr><td>{i}</td><td>{html.escape(p.name)}</td><td>{html.escape(p.version)}</td>"
            f"<td>{html.escape(p.repository)}</td><td style='text-align:right'>"
            f"{_size(p.size)}</td><td>{html.escape(str(self.reasons.get(p.name, '')))}"
            "</td></tr>"
            for i, p in enumerate(lock.packages, 1))
        return (f"<p><b>{html.escape(lock.os)} {html.escape(lock.version)} {lock.arch}</b>: "
                f"{len(lock.packages)} packages, {_size(self.download_size)}</p>"
                "<table><thead><tr><th>#</th><th>package</th><th>version</th>"
                "<th>repository</th><th>size</th><th>why</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")

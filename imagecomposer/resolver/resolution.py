"""The typed result of a resolution: the lock plus why each package is in it.

``Resolution.explain(name)`` walks the recorded reasons up to a request ("openssh-server
was requested in the spec"), so ``imagecomposer resolve SPEC --explain libc6`` and a Jupyter
cell give the same readable chain. ``_repr_html_`` renders a table in notebooks.
"""

from __future__ import annotations

import attrs

from imagecomposer.families.preferences import Reason, ReasonKind
from imagecomposer.foundation import display
from imagecomposer.lock import Lock

__all__ = ["Reason", "ReasonKind", "Resolution"]



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
        """One line: ``<Resolution debian 12 amd64: 180 packages, 60.1 MiB to download,
        from 2 repositories in 1.23 s>``."""
        lock = self.lock
        return (f"<Resolution {lock.os} {lock.version} {lock.arch}: {len(lock.packages)} "
                f"packages, {display.size(self.download_size)} to download, from "
                f"{len(lock.repositories)} repositories in {self.seconds:.2f} s>")

    def __str__(self) -> str:
        """The repr plus the first packages in install order (``imagecomposer resolve``)."""
        lock = self.lock
        rows = [f"  {p.name} {p.version} [{p.repository}]" for p in lock.packages[:12]]
        if len(lock.packages) > 12:
            rows.append(f"  ... {len(lock.packages) - 12} more (install order)")
        return "\n".join([repr(self), *rows])

    def _repr_html_(self) -> str:  # Jupyter: every package with why it is there
        lock = self.lock
        title = (f"{lock.os} {lock.version} {lock.arch}: {len(lock.packages)} packages, "
                 f"{display.size(self.download_size)}")
        rows = [(i, p.name, p.version, p.repository, display.size(p.size),
                 self.reasons.get(p.name, "")) for i, p in enumerate(lock.packages, 1)]
        return display.html_grid(("#", "package", "version", "repository", "size", "why"),
                                 rows, title=title, right=(0, 4))

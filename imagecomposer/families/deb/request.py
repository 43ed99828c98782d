"""Turn request strings into libsolv jobs: ``name``, ``name=version``, ``name>=version``,
``name<<version`` (apt spelling; ``<``/``>`` also accepted), globs (``python3-*``) and
virtual names (``mail-transport-agent``: one provider is chosen, like apt).

A string that matches nothing fails with :class:`~imagecomposer.foundation.errors.PackageNotFound`
and
a "did you mean" suggestion computed from every package and provided name in the pool.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import attrs

from imagecomposer.foundation.errors import PackageNotFound, UsageError

_REQUEST = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9.+_*?\[\]:-]*)\s*"
                      r"(?:(<<|>>|<=|>=|=|<|>)\s*(\S+))?\s*$")
_OPS = {"=": "EQ", ">=": "GE", "<=": "LE", ">>": "GT", ">": "GT", "<<": "LT", "<": "LT"}


@attrs.frozen
class Request:
    name: str
    op: str | None = None
    version: str | None = None

    @property
    def is_glob(self) -> bool:
        return any(c in self.name for c in "*?[")

    def __str__(self) -> str:
        return self.name if self.op is None else f"{self.name} {self.op} {self.version}"


def parse(text: str) -> Request:
    match = _REQUEST.match(text)
    if not match:
        raise UsageError(f"not a package request: {text!r} (use name, name=version, "
                         "name>=version or a glob)")
    name, op, version = match.groups()
    req = Request(name, op, version)
    if req.is_glob and op:
        raise UsageError(f"{text!r}: a glob cannot carry a version constraint")
    return req


def rel_flags(op: str) -> int:
    import solv

    kind = _OPS[op]
    flags: dict[str, int] = {"EQ": solv.REL_EQ, "GE": solv.REL_GT | solv.REL_EQ,
            "LE": solv.REL_LT | solv.REL_EQ, "GT": solv.REL_GT, "LT": solv.REL_LT}
    return flags[kind]


def all_names(pool: Any) -> set[str]:
    """Every package name and provided name in the pool (slow path: suggestions only)."""
    import solv

    names: set[str] = set()
    for solvable in pool.solvables_iter():
        names.add(solvable.name)
        for dep in solvable.lookup_deparray(solv.SOLVABLE_PROVIDES):
            names.add(str(dep).split(" ", 1)[0])
    return names


def not_found(pool: Any, request: Request, text: str) -> PackageNotFound:
    close = difflib.get_close_matches(request.name, sorted(all_names(pool)), n=3, cutoff=0.75)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    what = text if request.op is None else f"{text} (no version matches)"
    return PackageNotFound(f"Package not found: {what}{hint}")


def jobs_for(pool: Any, text: str, how: int) -> list[Any]:
    """Jobs doing ``how`` (e.g. ``SOLVER_INSTALL``) on what ``text`` names."""
    import solv

    request = parse(text)
    if request.op is not None:
        assert request.version is not None
        dep = pool.rel2id(pool.str2id(request.name), pool.str2id(request.version),
                          rel_flags(request.op))
        if not pool.whatprovides(dep):
            raise not_found(pool, request, text)
        return [pool.Job(how | solv.Job.SOLVER_SOLVABLE_PROVIDES, dep)]
    flags = (solv.Selection.SELECTION_NAME | solv.Selection.SELECTION_PROVIDES
             | solv.Selection.SELECTION_GLOB)
    selection = pool.select(request.name, flags)
    if selection.isempty():
        raise not_found(pool, request, text)
    return list(selection.jobs(how))

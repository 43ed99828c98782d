"""``${name}`` substitution in every string of a spec.

Values come from the spec's ``variables:`` mapping (templates' variables merged in) and from
overrides (``--set name=value`` on the command line, ``variables=`` in the API), which win.
A variable's value may itself use other variables. ``$${`` writes a literal ``${``; a ``$``
not followed by ``{`` is left alone (crypt hashes are full of them). An undefined variable
is an error at the position of the string that uses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from imagecomposer.errors import Problem
from imagecomposer.spec.positions import Node, walk
from imagecomposer.spec.sourcemap import format_path
from imagecomposer.spec.suggest import did_you_mean

_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class _Undefined(Exception):
    def __init__(self, name: str, offset: int, reason: str = "") -> None:
        super().__init__(name)
        self.name = name
        self.offset = offset
        self.reason = reason


def expand(text: str, lookup: Mapping[str, str]) -> str:
    """``text`` with ``${name}`` replaced; raises _Undefined for unknown or bad names."""
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        name = match.group(1)
        if name is None:
            raise _Undefined("", match.start(), "unterminated '${' (write '$${' for a literal)")
        if not NAME.match(name):
            raise _Undefined(name, match.start(), f"invalid variable name '{name}'")
        if name not in lookup:
            raise _Undefined(name, match.start())
        return lookup[name]
    return _TOKEN.sub(replace, text)


def _column(node: Node, offset: int) -> int:
    """Column of ``${`` inside a one-line scalar; the scalar's column otherwise."""
    raw = node.raw or ""
    if "\n" in raw or node.style in ("|", ">") or (node.style == '"' and "\\" in raw):
        return node.pos.column
    return node.pos.column + offset + (1 if node.style in ("'", '"') else 0)


def resolve_variables(declared: Node | None, overrides: Mapping[str, str],
                      problems: list[Problem]) -> dict[str, str]:
    """The final variable values: declared ones expanded among themselves, overrides on top."""
    raw: dict[str, str] = {}
    nodes: dict[str, Node] = {}
    if declared is not None and isinstance(declared.value, dict):
        for name, node in declared.value.items():
            if isinstance(node.value, str | int | float | bool):
                raw[name] = node.raw if node.raw is not None and not node.style else \
                    str(node.value)
                nodes[name] = node
    raw.update({k: str(v) for k, v in overrides.items()})
    done: dict[str, str] = {}

    def value_of(name: str, chain: tuple[str, ...]) -> str:
        if name in done:
            return done[name]
        if name in chain:
            raise _Undefined(name, 0, "variable cycle: " + " -> ".join((*chain, name)))
        if name not in raw:
            raise _Undefined(name, 0)
        if name in overrides:
            done[name] = raw[name]
            return done[name]
        lookup = _Lazy(raw, lambda n: value_of(n, (*chain, name)))
        done[name] = expand(raw[name], lookup)
        return done[name]

    for name in raw:
        try:
            value_of(name, ())
        except _Undefined as exc:
            node = nodes.get(name)
            message = exc.reason or f"undefined variable '{exc.name}'" + did_you_mean(
                exc.name, raw)
            problems.append(Problem(message, node.pos.file if node else None,
                                    node.pos.line if node else None,
                                    node.pos.column if node else None, f"variables.{name}"))
            done.setdefault(name, raw[name])
    return done


class _Lazy(Mapping[str, str]):
    """A mapping that resolves variables on first use (so values may refer to each other)."""

    def __init__(self, names: Mapping[str, str], get: Callable[[str], str]) -> None:
        self._names = names
        self._get = get

    def __getitem__(self, key: str) -> str:
        if key not in self._names:
            raise KeyError(key)
        return self._get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def substitute(root: Node, values: Mapping[str, str], problems: list[Problem]) -> None:
    """Expand ``${name}`` in every string node of ``root`` except the ``variables`` block."""
    for path, node in walk(root):
        if path[:1] == ("variables",) or not isinstance(node.value, str):
            continue
        if "$" not in node.value:
            continue
        try:
            node.value = expand(node.value, values)
        except _Undefined as exc:
            message = exc.reason or f"undefined variable '{exc.name}'" + did_you_mean(
                exc.name, values)
            problems.append(Problem(message, node.pos.file, node.pos.line,
                                    _column(node, exc.offset), format_path(path)))

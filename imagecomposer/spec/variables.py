"""``${name}`` substitution in every string of a spec.

Values come from the spec's ``variables:`` mapping (templates' variables merged in) and from
overrides (``--set name=value`` on the command line, ``variables=`` in the API), which win.
A variable's value may itself use other variables. ``$${`` writes a literal ``${``; a ``$``
not followed by ``{`` is left alone (crypt hashes are full of them). An undefined variable
is an error at the position of the string that uses it.

Like aliases, variables can multiply text (``a: ${b}${b}${b}...``, ``b: ${c}${c}...``) and
chain (``v1: ${v2}``, ``v2: ${v3}``, ...): a :class:`TextBudget` bounds the text that
substitution produces to :data:`~imagecomposer.foundation.yamldoc.limits.MAX_TEXT` and chains are
limited
to :data:`~imagecomposer.foundation.yamldoc.limits.MAX_VARIABLE_DEPTH` levels, each with one
problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

import attrs

from imagecomposer.foundation.errors import Problem
from imagecomposer.foundation.yamldoc.limits import MAX_TEXT, MAX_VARIABLE_DEPTH, MiB
from imagecomposer.foundation.yamldoc.positions import Node, walk
from imagecomposer.foundation.yamldoc.sourcemap import format_path
from imagecomposer.foundation.yamldoc.suggest import did_you_mean

_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class _Undefined(Exception):
    def __init__(self, name: str, offset: int, reason: str = "") -> None:
        super().__init__(name)
        self.name = name
        self.offset = offset
        self.reason = reason


class _Limit(_Undefined):
    """A limit was crossed: reported once, and substitution stops."""


@attrs.define
class TextBudget:
    """The characters substitution may still produce (shared by every expansion of a spec).

    ``exceeded`` is set once any variables limit was hit: the caller stops there.
    """

    left: int = MAX_TEXT
    exceeded: bool = False

    def take(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            self.exceeded = True
            raise _Limit("", 0, f"variables expand to more than {MAX_TEXT // MiB} MiB of text")


def expand(text: str, lookup: Mapping[str, str], budget: TextBudget | None = None) -> str:
    """``text`` with ``${name}`` replaced; raises _Undefined for unknown or bad names.

    Each replacement is charged to ``budget`` before the result is built.
    """
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
        value = lookup[name]
        if budget is not None:
            budget.take(len(value))
        return value
    return _TOKEN.sub(replace, text)


def _column(node: Node, offset: int) -> int:
    """Column of ``${`` inside a one-line scalar; the scalar's column otherwise."""
    raw = node.raw or ""
    if "\n" in raw or node.style in ("|", ">") or (node.style == '"' and "\\" in raw):
        return node.pos.column
    return node.pos.column + offset + (1 if node.style in ("'", '"') else 0)


def resolve_variables(declared: Node | None, overrides: Mapping[str, str],
                      problems: list[Problem], budget: TextBudget | None = None
                      ) -> dict[str, str]:
    """The final variable values: declared ones expanded among themselves, overrides on top."""
    budget = budget if budget is not None else TextBudget()
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
        if len(chain) >= MAX_VARIABLE_DEPTH:
            shown = [*chain[:3], "...", *chain[-1:], name]
            raise _Limit(name, 0, f"variables nested more than {MAX_VARIABLE_DEPTH} levels "
                         f"deep: " + " -> ".join(shown))
        if name not in raw:
            raise _Undefined(name, 0)
        if name in overrides:
            done[name] = raw[name]
            return done[name]
        lookup = _Lazy(raw, lambda n: value_of(n, (*chain, name)))
        done[name] = expand(raw[name], lookup, budget)
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
            if isinstance(exc, _Limit):
                budget.exceeded = True
                return {**raw, **done}
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


def substitute(root: Node, values: Mapping[str, str], problems: list[Problem],
               budget: TextBudget | None = None) -> None:
    """Expand ``${name}`` in every string node of ``root`` except the ``variables`` block.

    Does nothing once ``budget`` was exceeded (that was reported already).
    """
    budget = budget if budget is not None else TextBudget()
    for path, node in walk(root):
        if budget.exceeded:
            return
        if path[:1] == ("variables",) or not isinstance(node.value, str):
            continue
        if "$" not in node.value:
            continue
        try:
            node.value = expand(node.value, values, budget)
        except _Undefined as exc:
            message = exc.reason or f"undefined variable '{exc.name}'" + did_you_mean(
                exc.name, values)
            problems.append(Problem(message, node.pos.file, node.pos.line,
                                    _column(node, exc.offset), format_path(path)))

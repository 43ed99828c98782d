"""Where each field of a loaded document was written (file, line, column).

Kept on the loaded :class:`~imagecomposer.spec.model.Spec` (and config) so that checks
running after loading (provider configured, files exist, legal combinations) still point at
the line the user wrote, which may be in a template file.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

from imagecomposer.foundation.errors import Problem

PathKey: TypeAlias = tuple[str | int, ...]


@attrs.frozen
class Pos:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def format_path(path: PathKey) -> str:
    """``("customizations", "users", 0, "name")`` → ``customizations.users[0].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def parse_path(dotted: str) -> PathKey:
    """The inverse of :func:`format_path`."""
    parts: list[str | int] = []
    for chunk in dotted.split("."):
        name, _, rest = chunk.partition("[")
        if name:
            parts.append(name)
        while rest:
            number, _, rest = rest.partition("]")
            parts.append(int(number))
            rest = rest.removeprefix("[")
    return tuple(parts)


@attrs.frozen
class SourceMap:
    """Positions by dotted field path; ``key_positions`` for values written as ``key: value``."""

    positions: dict[str, Pos] = attrs.field(factory=dict)
    key_positions: dict[str, Pos] = attrs.field(factory=dict)
    default_file: str = "<spec>"

    def pos(self, path: PathKey | str) -> Pos | None:
        dotted = path if isinstance(path, str) else format_path(path)
        return self.positions.get(dotted)

    def problem(self, path: PathKey | str, message: str, *, at_key: bool = False) -> Problem:
        """A Problem at ``path``, or at its nearest ancestor that was written down."""
        parts = list(parse_path(path) if isinstance(path, str) else path)
        dotted = format_path(tuple(parts))
        pos: Pos | None = None
        while True:
            key = format_path(tuple(parts))
            pos = (self.key_positions.get(key) if at_key else None) or self.positions.get(key)
            if pos is not None or not parts:
                break
            parts.pop()
        if pos is None:
            return Problem(message, self.default_file, None, None, dotted)
        return Problem(message, pos.file, pos.line, pos.column, dotted)

"""YAML documents as trees of positioned nodes.

Error messages must say ``file:line:column: field.path: what``, also after templates were
merged and variables substituted. So YAML is not loaded into plain dicts straight away: it is
*composed* with ruamel.yaml into :class:`Node` objects that remember the file, line and column
of every value (and of every mapping key). Templates merge node trees, variables rewrite
string nodes, and only then :func:`to_plain` produces the data the JSON Schema checks.
:func:`index` maps each field path back to its node to position schema errors.

Scalars keep their source text (``raw``) so that ``version: 22.04`` or ``mode: 0644`` can be
read as the strings the user wrote when the schema expects a string.

Documents are composed under the limits of :mod:`imagecomposer.foundation.yamldoc.limits` (size,
values
with aliases expanded, nesting, aliases), so a hostile document is refused with one
positioned problem in milliseconds instead of exhausting memory or the stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
from ruamel.yaml import YAML
from ruamel.yaml import nodes as ynodes
from ruamel.yaml.error import MarkedYAMLError

from imagecomposer.foundation.errors import Problem
from imagecomposer.foundation.yamldoc.limits import (
    MAX_TEXT,
    MAX_VALUES,
    LimitedComposer,
    LimitedScanner,
    LimitExceeded,
    MiB,
    check_size,
)
from imagecomposer.foundation.yamldoc.sourcemap import PathKey, Pos, SourceMap, format_path

_TAG = "tag:yaml.org,2002:"


@attrs.define
class Node:
    """One YAML value. ``value`` is a dict of Nodes, a list of Nodes, or a plain scalar."""

    value: Any
    pos: Pos
    key_pos: Pos | None = None  # where the mapping key of this value was written
    raw: str | None = None  # source text of a scalar
    style: str | None = None  # ' " | > for quoted and block scalars, None when plain

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_seq(self) -> bool:
        return isinstance(self.value, list)

    def get(self, key: str) -> Node | None:
        if isinstance(self.value, dict):
            found: Node | None = self.value.get(key)
            return found
        return None


class YamlSyntaxError(Exception):
    """Raised by :func:`compose` with the problems found; the caller collects them."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def _pos(file: str, mark: Any) -> Pos:
    return Pos(file, int(mark.line) + 1, int(mark.column) + 1)


def _scalar(node: ynodes.ScalarNode) -> Any:
    tag = str(node.tag)
    text: str = node.value
    if tag == _TAG + "null":
        return None
    if tag == _TAG + "bool":
        return text.lower() in ("true", "yes", "on")
    if tag == _TAG + "int":
        cleaned = text.replace("_", "")
        try:
            return int(cleaned, 0)  # 0x1f, 0o17, 42
        except ValueError:
            return int(cleaned, 10)  # YAML 1.2: 0644 is decimal (strings keep "0644")
    if tag == _TAG + "float":
        lowered = text.lower()
        if lowered in (".inf", "+.inf"):
            return float("inf")
        if lowered == "-.inf":
            return float("-inf")
        if lowered == ".nan":
            return float("nan")
        return float(text.replace("_", ""))
    return text


def compose(text: str, file: str) -> Node | None:
    """Parse ``text`` (named ``file`` in messages). None for an empty document.

    Raises :class:`YamlSyntaxError` for syntax errors, duplicate keys, tags or anchors we
    do not accept, and documents past the limits of :mod:`imagecomposer.foundation.yamldoc.limits`.
    """
    yaml = YAML(typ="rt")
    yaml.Scanner = LimitedScanner
    yaml.Composer = LimitedComposer
    try:
        check_size(text)
        root = yaml.compose(text)
    except LimitExceeded as exc:
        raise YamlSyntaxError([limit_problem(exc, file)]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(x for x in (exc.problem, exc.context) if x) or "invalid YAML"
        problem = Problem(f"YAML syntax error: {what}", file,
                          (mark.line + 1) if mark else None, (mark.column + 1) if mark else None)
        raise YamlSyntaxError([problem]) from None
    if root is None:
        return None
    problems: list[Problem] = []
    tree = _convert(root, file, problems)
    if problems:
        raise YamlSyntaxError(problems)
    return tree


def limit_problem(exc: LimitExceeded, file: str) -> Problem:
    return Problem(exc.message, file, exc.line, exc.column)


def _convert(node: ynodes.Node, file: str, problems: list[Problem]) -> Node:
    """Our tree of ruamel's graph (aliases become copies: the composer bounded their sum)."""
    pos = _pos(file, node.start_mark)
    if isinstance(node, ynodes.MappingNode):
        out: dict[str, Node] = {}
        merged: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key_pos = _pos(file, key_node.start_mark)
            if str(key_node.tag) == _TAG + "merge":
                sources = value_node.value if isinstance(value_node, ynodes.SequenceNode) \
                    else [value_node]
                for source in sources:
                    converted = _convert(source, file, problems)
                    if converted.is_map:
                        for k, v in converted.value.items():
                            merged.setdefault(k, v)
                continue
            if not isinstance(key_node, ynodes.ScalarNode):
                problems.append(Problem("YAML syntax error: mapping keys must be plain strings",
                                        file, key_pos.line, key_pos.column))
                continue
            key = str(key_node.value)
            if key in out:
                first = out[key].key_pos or out[key].pos
                problems.append(Problem(
                    f"duplicate key '{key}' (first given on line {first.line})",
                    file, key_pos.line, key_pos.column))
                continue
            child = _convert(value_node, file, problems)
            child.key_pos = key_pos
            out[key] = child
        for k, v in merged.items():
            out.setdefault(k, v)
        return Node(out, pos)
    if isinstance(node, ynodes.SequenceNode):
        return Node([_convert(item, file, problems) for item in node.value], pos)
    assert isinstance(node, ynodes.ScalarNode)
    style = node.style if node.style in ("'", '"', "|", ">") else None
    try:
        value = node.value if style else _scalar(node)
    except ValueError:
        value = node.value
    return Node(value, pos, raw=str(node.value), style=style)


def to_plain(node: Node | None) -> Any:
    """The node tree as plain dicts, lists and scalars (what the JSON Schema sees)."""
    if node is None:
        return None
    if isinstance(node.value, dict):
        return {k: to_plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [to_plain(v) for v in node.value]
    return node.value


def walk(node: Node, path: PathKey = ()) -> Iterator[tuple[PathKey, Node]]:
    """Every node with its field path, parents before children."""
    yield path, node
    if isinstance(node.value, dict):
        for key, child in node.value.items():
            yield from walk(child, (*path, key))
    elif isinstance(node.value, list):
        for i, child in enumerate(node.value):
            yield from walk(child, (*path, i))


def index(node: Node | None) -> dict[PathKey, Node]:
    return dict(walk(node)) if node is not None else {}


def merged_limit(root: Node) -> Problem | None:
    """The problem of a document past MAX_VALUES or MAX_TEXT once its templates are merged.

    Each file was composed under the limits; this bounds their sum (up to
    ``MAX_TEMPLATES`` + 1 files), counted like the composer counts (keys are values).
    """
    values = text = 0
    for _, node in walk(root):
        values += 1 + (len(node.value) if isinstance(node.value, dict) else 0)
        text += len(node.value) if isinstance(node.value, str) else 0
        if values > MAX_VALUES or text > MAX_TEXT:
            what = f"{MAX_VALUES} values" if values > MAX_VALUES else \
                f"{MAX_TEXT // MiB} MiB of text"
            return Problem(f"the spec with its templates merged exceeds the limit of {what}",
                           node.pos.file, node.pos.line, node.pos.column)
    return None


def source_map(root: Node | None, default_file: str) -> SourceMap:
    """The positions of every node of ``root``, by dotted field path."""
    positions: dict[str, Pos] = {}
    keys: dict[str, Pos] = {}
    for path, node in (walk(root) if root is not None else ()):
        dotted = format_path(path)
        positions[dotted] = node.pos
        if node.key_pos is not None:
            keys[dotted] = node.key_pos
    return SourceMap(positions, keys, default_file)

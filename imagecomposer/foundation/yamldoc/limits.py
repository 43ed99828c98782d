"""Limits on the YAML documents imagecomposer reads (specs, templates, the global config).

A YAML file is small, but what it describes need not be: a 1 kB "billion laughs" document
expands its aliases to 10⁹ values, 10,000 nested brackets overflow a recursive parser, and
ruamel.yaml's pure-Python scanner composes only 10,000 to 20,000 values a second. So every
document is refused, with one positioned problem, as soon as it crosses one of these limits,
*while* it is being read and composed (before anything is expanded or converted):

- :data:`MAX_BYTES` of text, checked before parsing (a file is never read past it);
- :data:`MAX_VALUES` values (scalars, lists, mappings, and mapping keys), counting a value
  reached through an alias once per use, i.e. the size of the document with aliases expanded;
- :data:`MAX_TEXT` characters of scalar text, aliases expanded (and, in
  :mod:`imagecomposer.spec.variables`, variables substituted);
- :data:`MAX_DEPTH` levels of nesting, aliases expanded;
- :data:`MAX_ALIASES` aliases, and no alias inside the value it names.

docs/spec.md ("Limits") documents them; real specs stay far below every one (the largest
shipped example has ~150 values, 6 levels, 3 kB).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ruamel.yaml.composer import Composer
from ruamel.yaml.events import AliasEvent, ScalarEvent
from ruamel.yaml.scanner import RoundTripScanner

MiB = 1024 * 1024
MAX_BYTES = 1 * MiB
MAX_VALUES = 10_000
MAX_TEXT = 8 * MiB
MAX_DEPTH = 64
MAX_ALIASES = 1_000
MAX_VARIABLE_DEPTH = 32  # ${a} -> ${b} -> ... (imagecomposer.spec.variables)
MAX_TEMPLATES = 32  # template files read for one spec (imagecomposer.spec.templates)


class LimitExceeded(Exception):
    """A document crossed a limit; ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None
                 ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    @classmethod
    def at(cls, message: str, mark: Any) -> LimitExceeded:
        return cls(message, int(mark.line) + 1, int(mark.column) + 1)


def too_large(data: bytes, size: int | None = None) -> LimitExceeded:
    """The problem of a document whose first bytes are ``data`` (more than MAX_BYTES)."""
    line = data.count(b"\n", 0, MAX_BYTES) + 1
    column = MAX_BYTES - (data.rfind(b"\n", 0, MAX_BYTES) + 1) + 1
    actual = f" (it has {size} bytes)" if size else ""
    return LimitExceeded(f"YAML document exceeds the limit of {MAX_BYTES // MiB} MiB "
                         f"({MAX_BYTES} bytes){actual}", line, column)


def check_size(text: str) -> None:
    """Raise :class:`LimitExceeded` if ``text`` is more than MAX_BYTES of UTF-8."""
    if len(text) <= MAX_BYTES // 4:
        return  # four bytes per character at most
    data = text.encode("utf-8", "surrogatepass")
    if len(data) > MAX_BYTES:
        raise too_large(data, len(data))


def read_document(path: Path) -> str:
    """The text of the YAML file ``path``, reading at most MAX_BYTES + 1 bytes of it.

    Raises :class:`LimitExceeded` for a larger file (a 50 GB file or ``/dev/zero`` is refused
    after one short read), and OSError / UnicodeDecodeError like :meth:`Path.read_text`.
    """
    with path.open("rb") as handle:
        data = handle.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise too_large(data, os.fstat(handle.fileno()).st_size)
    return data.decode("utf-8")


def _too_deep(mark: Any, alias: str | None = None) -> LimitExceeded:
    through = f" (with alias '*{alias}' expanded)" if alias else ""
    return LimitExceeded.at(f"YAML document nested more than {MAX_DEPTH} levels deep{through}",
                            mark)


class LimitedScanner(RoundTripScanner):
    """ruamel.yaml's scanner, refusing flow collections (``[``, ``{``) nested too deeply.

    The scanner runs ahead of the composer, and it keeps one possible simple key per open
    flow level and checks them all on every token: 1,000 nested ``[`` cost it a second
    before the composer sees the 65th level. Bounding the flow level here keeps scanning
    linear.
    """

    def fetch_flow_collection_start(self, token_class: Any, to_push: str) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise _too_deep(self.reader.get_mark())
        super().fetch_flow_collection_start(token_class, to_push)


class LimitedComposer(Composer):
    """ruamel.yaml's composer, counting what it composes and refusing past the limits.

    Composition is where aliases are resolved (to shared nodes, so the composed graph stays
    small) and where ruamel recurses once per nesting level; both are bounded here, so
    neither the composer nor anything walking its result later can blow up. The size of
    each anchored value (values, text, height) is remembered when it is complete, and an
    alias adds that size: the counts are those of the fully expanded document.
    """

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.values = 0
        self.text = 0
        self.aliases = 0
        self._heights: list[int] = [0]  # the tallest child so far of each open node
        self._anchored: dict[int, tuple[int, int, int]] = {}  # id(node) -> size

    def _add(self, values: int, text: int, mark: Any) -> None:
        self.values += values
        self.text += text
        if self.values > MAX_VALUES:
            raise LimitExceeded.at(f"YAML document exceeds the limit of {MAX_VALUES} values "
                                   f"(aliases expanded)", mark)
        if self.text > MAX_TEXT:
            raise LimitExceeded.at(f"YAML document exceeds the limit of {MAX_TEXT // MiB} MiB "
                                   f"of text (aliases expanded)", mark)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        mark = event.start_mark
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is ruamel's error
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    raise LimitExceeded.at(f"YAML document uses more than {MAX_ALIASES} "
                                           f"aliases", mark)
                size = self._anchored.get(id(target))
                if size is None:
                    raise LimitExceeded.at(f"alias '*{event.anchor}' is used inside the value "
                                           f"it names", mark)
                values, text, height = size
                if self.depth + height > MAX_DEPTH:
                    raise _too_deep(mark, event.anchor)
                self._add(values, text, mark)
                self._heights[-1] = max(self._heights[-1], height)
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            raise _too_deep(mark)
        before = (self.values, self.text)
        self._add(1, len(event.value) if isinstance(event, ScalarEvent) else 0, mark)
        self._heights.append(0)
        node = super().compose_node(parent, index)
        height = self._heights.pop() + 1
        self._heights[-1] = max(self._heights[-1], height)
        if getattr(node, "anchor", None) is not None:
            self._anchored[id(node)] = (self.values - before[0], self.text - before[1], height)
        return node

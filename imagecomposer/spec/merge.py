"""Deep merge of a template (parent) and the document that extends it (child).

The rules, by field (documented in docs/templates.md):

- mappings merge key by key; for scalars the child wins; a child value of ``null`` removes
  the parent's value (back to the default);
- lists of scalars are the union, parent's items first, without duplicates;
- ``customizations.packages``: ``install`` and ``remove`` are unions, and a package the
  child removes is dropped from the parent's ``install`` (remove wins). A package the child
  installs but the parent removes stays in both lists: remove wins, and validation warns;
- ``customizations.services``: unions; a service the child disables is dropped from the
  parent's ``enabled`` and vice versa (the child wins);
- ``customizations.users`` merge by ``name`` (the same rules inside a user, so ``groups``
  and ``ssh_keys`` are unions); ``customizations.files`` by ``destination`` and
  ``repositories`` by ``name``: a child entry replaces the parent's entry of the same key;
  new entries are appended;
- ``disk.partitions``, ``customizations.network.interfaces`` and ``build.stages`` are
  ordered layouts: the child's list replaces the parent's.

Nodes keep their positions, so an error in a merged value still names the file it came from.
"""

from __future__ import annotations

from typing import Any

from imagecomposer.foundation.yamldoc.positions import Node

Pattern = tuple[str, ...]

MERGE_BY: dict[Pattern, str] = {
    ("customizations", "users"): "name",
}
REPLACE_BY: dict[Pattern, str] = {
    ("customizations", "files"): "destination",
    ("repositories",): "name",
}
REPLACE: set[Pattern] = {
    ("disk", "partitions"),
    ("customizations", "network", "interfaces"),
    ("build", "stages"),
}
# (list, opposite list): entries named in the child's opposite list leave the parent's list.
OPPOSITES: dict[Pattern, Pattern] = {
    ("customizations", "packages", "install"): ("customizations", "packages", "remove"),
    ("customizations", "services", "enabled"): ("customizations", "services", "disabled"),
    ("customizations", "services", "disabled"): ("customizations", "services", "enabled"),
}


def _scalar_values(node: Node | None) -> list[Any]:
    if node is None or not isinstance(node.value, list):
        return []
    return [item.value for item in node.value if not isinstance(item.value, dict | list)]


def merge(parent: Node, child: Node, path: Pattern = (),
          child_root: Node | None = None) -> Node:
    """A new node: ``child`` merged over ``parent`` (neither is modified)."""
    child_root = child_root if child_root is not None else child
    if isinstance(parent.value, dict) and isinstance(child.value, dict):
        out: dict[str, Node] = dict(parent.value)
        for key, value in child.value.items():
            if value.value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, (*path, key), child_root)
            else:
                out[key] = value
        return Node(out, child.pos, child.key_pos or parent.key_pos, style=child.style)
    if isinstance(parent.value, list) and isinstance(child.value, list):
        return Node(_merge_list(parent.value, child.value, path, child_root), child.pos,
                    child.key_pos or parent.key_pos)
    return child


def _lookup(root: Node, path: Pattern) -> Node | None:
    node: Node | None = root
    for part in path:
        node = node.get(part) if node is not None else None
    return node


def _key_of(item: Node, field: str) -> Any:
    found = item.get(field)
    return found.value if found is not None else None


def _merge_list(parent: list[Node], child: list[Node], path: Pattern,
                child_root: Node) -> list[Node]:
    if path in REPLACE:
        return list(child)
    field = MERGE_BY.get(path) or REPLACE_BY.get(path)
    if field is not None:
        out = list(parent)
        where = {_key_of(item, field): i for i, item in enumerate(out)
                 if _key_of(item, field) is not None}
        for item in child:
            key = _key_of(item, field)
            if key is not None and key in where:
                i = where[key]
                out[i] = merge(out[i], item, path, child_root) if path in MERGE_BY else item
            else:
                out.append(item)
        return out
    dropped: set[Any] = set()
    if path in OPPOSITES:
        dropped = set(_scalar_values(_lookup(child_root, OPPOSITES[path])))
    from_parent = {id(item) for item in parent}
    seen: set[Any] = set()
    merged: list[Node] = []
    for item in [*parent, *child]:
        if isinstance(item.value, dict | list):
            merged.append(item)
            continue
        if item.value in seen or (id(item) in from_parent and item.value in dropped):
            continue
        seen.add(item.value)
        merged.append(item)
    return merged

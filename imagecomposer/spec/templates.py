"""``extends:``: build specs derived from templates.

A template is a partial spec. ``extends`` names a built-in template or a file:

- a path (starts with ``./``, ``../``, ``/`` or ``~``, or ends with ``.yml``/``.yaml``) is
  read relative to the file that names it;
- anything else is a built-in template shipped in ``imagecomposer/spec/templates/``:
  ``debian-12/production-server`` names one directly, and a bare ``production-server`` picks
  the one for the OS profile of the spec (``image.base.os``-``image.base.version``).

Templates may extend other templates, up to :data:`MAX_DEPTH` levels; a cycle is an error
that shows the chain. A list of templates is merged in order, the spec itself last. The merge
rules are in :mod:`imagecomposer.spec.merge`. At most
:data:`~imagecomposer.foundation.yamldoc.limits.MAX_TEMPLATES` template files are read for one spec
(a
chain of lists naming the same template twenty times would otherwise read it 20⁸ times).

A template file is read only if it lies inside the spec's roots (:mod:`imagecomposer.spec.roots`:
the spec's directory tree and the allowed paths, symlinks followed) and is named ``*.yml`` or
``*.yaml``; a file that is not a YAML mapping with at least one build spec key is refused as a
whole. Errors about a refused file name the file and the problem, never its content
(``extends: /etc/shadow`` must not print the host's password hashes).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import attrs

from imagecomposer.foundation.errors import Problem
from imagecomposer.foundation.yamldoc import schemacheck
from imagecomposer.foundation.yamldoc.limits import MAX_TEMPLATES, LimitExceeded, read_document
from imagecomposer.foundation.yamldoc.positions import Node, YamlSyntaxError, compose, limit_problem
from imagecomposer.foundation.yamldoc.suggest import did_you_mean
from imagecomposer.spec.merge import merge
from imagecomposer.spec.roots import outside
from imagecomposer.spec.structure import absolutize

MAX_DEPTH = 8
SUFFIXES = (".yml", ".yaml")


def _template_root() -> Traversable:
    return resources.files("imagecomposer.spec").joinpath("templates")


def builtin_templates() -> list[str]:
    """Names of the built-in templates, ``profile/name``."""
    names: list[str] = []
    for profile in _template_root().iterdir():
        if profile.is_dir():
            names += [f"{profile.name}/{f.name.removesuffix('.yml')}"
                      for f in profile.iterdir() if f.name.endswith(".yml")]
    return sorted(names)


def is_path_reference(ref: str) -> bool:
    return ref.startswith(("./", "../", "/", "~")) or ref.endswith((".yml", ".yaml"))


@attrs.define
class Reading:
    """What every template read for one spec shares: the roots files must lie in, and how
    many template files were read (and whether the limit was hit, reported once)."""

    roots: tuple[Path, ...]
    count: int = 0
    exhausted: bool = False


@attrs.frozen
class _Source:
    key: str  # identity for cycle detection
    display: str  # file name in messages
    text: str
    directory: Path | None


def _profile(node: Node) -> str | None:
    image = node.get("image")
    base = image.get("base") if image is not None else None
    if base is None:
        return None
    os_node, version_node = base.get("os"), base.get("version")
    if os_node is None or version_node is None:
        return None
    version = version_node.raw if version_node.raw is not None else str(version_node.value)
    return f"{os_node.value}-{version}"


def _find(ref: str, directory: Path | None, profile: str | None, roots: Sequence[Path]
          ) -> _Source | Problem | str:
    """The template named ``ref``, or why it cannot be found (a Problem inside the file)."""
    if is_path_reference(ref):
        path = Path(ref).expanduser()
        if not path.is_absolute():
            path = (directory or Path.cwd()) / path
        why = outside(path, roots, ref)
        if why is not None:
            return f"template file {why}"
        if path.suffix not in SUFFIXES:
            return f"template file '{ref}' is not a .yml or .yaml file"
        if not path.is_file():
            return f"template file '{ref}' not found (looked for {path})" if not \
                path.exists() else f"template file '{ref}' is not a regular file"
        try:
            text = read_document(path)
        except LimitExceeded as exc:
            return limit_problem(exc, str(path))
        except UnicodeDecodeError:
            return f"template file '{ref}' is not UTF-8 text"
        except OSError as exc:
            return f"template file '{ref}' cannot be read: {exc.strerror or exc}"
        return _Source(str(path.resolve()), str(path), text, path.parent)
    names = builtin_templates()
    candidates = [ref] if "/" in ref else ([f"{profile}/{ref}"] if profile else [])
    for name in candidates:
        if name in names:
            text = _template_root().joinpath(f"{name}.yml").read_text(encoding="utf-8")
            return _Source(f"builtin:{name}", f"<template {name}>", text, None)
    if "/" not in ref and profile is None:
        return f"template '{ref}' needs image.base (os and version) to pick the OS profile, " \
               f"or name one: {', '.join(n for n in names if n.endswith('/' + ref)) or ref}"
    short = sorted({n.split("/", 1)[1] for n in names})
    hint = did_you_mean(ref.split("/")[-1], short) if "/" not in ref else did_you_mean(ref, names)
    available = ", ".join(n for n in names if profile is None or n.startswith(profile + "/"))
    return f"unknown template '{ref}'{hint}; built-in templates: {available or 'none'}"


def _spec_keys() -> frozenset[str]:
    return frozenset(schemacheck.load_schema("imagecomposer.spec")["properties"])


def _refused(parent: Node, ref: str, ref_node: Node, found: _Source) -> Problem | None:
    """Why a composed template file is not one we accept; its content is never quoted."""
    at = ref_node.pos
    if found.directory is not None and parent.is_map and \
            not any(key in _spec_keys() for key in parent.value):
        return Problem(f"template file '{ref}' is not a build spec template (none of its "
                       f"top-level keys is a spec field)", at.file, at.line, at.column, "extends")
    build = parent.get("build")
    allowed = build.get("allowed_paths") if build is not None else None
    if allowed is not None:
        pos = allowed.key_pos or allowed.pos
        return Problem("build.allowed_paths is only honoured in the spec file itself, not in a "
                       "template", pos.file, pos.line, pos.column, "build.allowed_paths")
    return None


def apply_extends(node: Node, directory: Path | None, key: str, problems: list[Problem],
                  reading: Reading, chain: tuple[str, ...] = (), profile: str | None = None
                  ) -> Node:
    """``node`` with its ``extends`` resolved and merged (the key itself is removed)."""
    chain = (*chain, key)
    extends = node.get("extends")
    if extends is None:
        return node
    assert isinstance(node.value, dict)
    rest = Node({k: v for k, v in node.value.items() if k != "extends"}, node.pos, node.key_pos)
    refs = extends.value if isinstance(extends.value, list) else [extends]
    profile = _profile(node) or profile
    merged: Node | None = None
    for ref_node in refs:
        if reading.exhausted:
            break
        ref = ref_node.value
        at = ref_node.pos
        if not isinstance(ref, str) or not ref:
            problems.append(Problem("extends: must be a template name or path, or a list of them",
                                    at.file, at.line, at.column, "extends"))
            continue
        reading.count += 1
        if reading.count > MAX_TEMPLATES:
            reading.exhausted = True
            problems.append(Problem(f"more than {MAX_TEMPLATES} template files to read for one "
                                    f"spec (counting every extends of every template)",
                                    at.file, at.line, at.column, "extends"))
            break
        found = _find(ref, directory, profile, reading.roots)
        if isinstance(found, str):
            problems.append(Problem(found, at.file, at.line, at.column, "extends"))
            continue
        if isinstance(found, Problem):
            problems.append(found)
            continue
        if found.key in chain:
            names = [c.removeprefix("builtin:") for c in (*chain, found.key)]
            problems.append(Problem("template cycle: " + " -> ".join(names),
                                    at.file, at.line, at.column, "extends"))
            continue
        if len(chain) > MAX_DEPTH:
            problems.append(Problem(f"templates nested more than {MAX_DEPTH} levels deep: "
                                    + " -> ".join(c.removeprefix("builtin:") for c in chain),
                                    at.file, at.line, at.column, "extends"))
            continue
        try:
            parent = compose(found.text, found.display)
        except YamlSyntaxError as exc:
            problems.extend(exc.problems)
            continue
        if parent is None:
            continue
        if not isinstance(parent.value, dict):
            problems.append(Problem("a template must be a mapping", found.display,
                                    parent.pos.line, parent.pos.column))
            continue
        refused = _refused(parent, ref, ref_node, found)
        if refused is not None:
            problems.append(refused)
            continue
        if found.directory is not None:
            absolutize(parent, found.directory)
        parent = apply_extends(parent, found.directory, found.key, problems, reading, chain,
                               profile)
        merged = parent if merged is None else merge(merged, parent)
        profile = profile or _profile(merged)  # later bare names may use an earlier base
    return rest if merged is None else merge(merged, rest)

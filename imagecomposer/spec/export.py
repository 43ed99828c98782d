"""A Spec as plain data: for the build manifest (no secrets) and its canonical JSON (all)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cattrs

if TYPE_CHECKING:
    from imagecomposer.spec.model import Spec


SECRET_FIELDS = ("password_hash", "root_password_hash")
REDACTED = "<redacted>"

_KEEP_PATHS = cattrs.Converter()
_KEEP_PATHS.register_unstructure_hook(Path, lambda path: path)


def _paths(value: Any, base: Path) -> Any:
    """Paths relative to the spec directory when inside it, so data is machine independent."""
    if isinstance(value, dict):
        return {k: _paths(v, base) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_paths(v, base) for v in value]
    if isinstance(value, Path):
        try:
            return "./" + value.relative_to(base).as_posix()
        except ValueError:
            return str(value)
    return value


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in SECRET_FIELDS and item is not None:
                out[key] = REDACTED
            elif key == "content" and isinstance(item, str):
                out[key] = "sha256:" + hashlib.sha256(item.encode()).hexdigest()
            else:
                out[key] = _redact(item)
        return out
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def spec_data(spec: Spec, *, secrets: bool) -> dict[str, Any]:
    """``spec`` as JSON-ready data; ``secrets=False`` redacts hashes and inline contents."""
    raw: dict[str, Any] = _KEEP_PATHS.unstructure(spec)
    raw.pop("path", None)
    raw.pop("base_dir", None)
    raw.pop("source_map", None)
    raw["variables"] = dict(spec.variables)
    data: dict[str, Any] = _paths(raw, spec.directory)
    return data if secrets else _redact(data)

"""Text forms of the configuration: the commented file ``config init`` writes, and the
effective configuration with the origin of every value that ``config show`` prints."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from imagecomposer.config.loader import LoadedConfig
from imagecomposer.foundation.convert import CONVERTER
from imagecomposer.foundation.yamldoc.sourcemap import format_path


def default_config_text() -> str:
    """A commented YAML config file holding the built-in defaults."""
    return resources.files("imagecomposer.config").joinpath("default_config.yml").read_text(
        encoding="utf-8")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value)  # JSON flow collections are valid YAML
    text = str(value)
    plain = (text and text[0].isalnum()) or text.startswith("/")
    if plain and not any(c in text for c in ":#{}[],&*!|>'\"%@`") and \
            text.lower() not in ("null", "true", "false", "yes", "no", "on", "off", "~"):
        return text
    return json.dumps(text)


def render_config(loaded: LoadedConfig) -> str:
    """The effective configuration as YAML, each value commented with where it came from."""
    lines = ["# effective imagecomposer configuration",
             f"# file: {loaded.path if loaded.path is not None else 'none (built-in defaults)'}"]

    data: dict[str, Any] = CONVERTER.unstructure(loaded.config)

    def emit(node: dict[str, Any], path: tuple[str, ...], indent: int) -> None:
        for key, value in node.items():
            here = (*path, key)
            pad = "  " * indent
            if isinstance(value, dict) and value:
                lines.append(f"{pad}{key}:")
                emit(value, here, indent + 1)
                continue
            dotted = format_path(here)
            origin = loaded.origins.get(dotted, "default")
            lines.append(f"{pad}{key}: {_scalar(value)}  # {origin}")

    emit(data, (), 0)
    return "\n".join(lines) + "\n"

"""The one cattrs converter for imagecomposer's typed documents (spec, config, lock, OS
profiles, stage inputs): unknown keys are refused, paths travel as strings."""

from __future__ import annotations

from pathlib import Path

import cattrs


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(Path, lambda value, _: Path(value))
    converter.register_unstructure_hook(Path, str)
    return converter


CONVERTER = _converter()

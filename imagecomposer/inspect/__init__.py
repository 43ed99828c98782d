"""Inspect and compare disk images offline: ``Image.open(path)``, ``compare(a, b)``.

No mount, no loop device, no root: see docs/inspect.md. Results are typed (frozen attrs
classes) with ``to_dict()`` (the JSON form, described by the schemas in ``schemas/``),
``text()`` and ``_repr_html_`` for Jupyter.
"""

from imagecomposer.inspect.compare import MODES, CompareReport, compare
from imagecomposer.inspect.fsbase import FileRecord
from imagecomposer.inspect.image import Image
from imagecomposer.inspect.report import InspectReport
from imagecomposer.inspect.schemas import schema, schema_text

__all__ = ["MODES", "CompareReport", "FileRecord", "Image", "InspectReport", "compare",
           "schema", "schema_text"]

"""Write the ahead-of-time compiled JSON schema validators (``schema_validator.py`` of the
spec and configuration packages) after a schema, the settings that fill its enums, or
fastjsonschema changed: ``python scripts/generate_validators.py`` from the repository root.
``tests/foundation/test_schema_validators.py`` fails while one is stale."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagecomposer.foundation.yamldoc.schemacheck import validator_module

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("imagecomposer.config", "imagecomposer.spec")


def main() -> int:
    for package in PACKAGES:
        path = ROOT / package.replace(".", "/") / "schema_validator.py"
        path.write_text(validator_module(package), encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

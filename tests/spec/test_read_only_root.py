"""read_only_root warns when nothing writable is mounted at /var."""

from __future__ import annotations

from pathlib import Path

from imagecomposer.config.model import Config
from imagecomposer.spec import Spec, check

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "debian-12-verity.yml"


def test_verity_example_with_a_var_partition_has_no_warning() -> None:
    assert check(Spec.load(EXAMPLE), Config()).warnings == ()


def test_read_only_root_without_var_partition_warns(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    var_line = "    - {name: var, type: var, size: rest, filesystem: ext4, mountpoint: /var}\n"
    assert var_line in text
    spec = Spec.from_text(text.replace(var_line, ""), name="ro.yml", base_dir=tmp_path)
    warnings = [str(w) for w in check(spec, Config()).warnings]
    assert len(warnings) == 1
    assert "customizations.security.read_only_root: read_only_root without a partition " \
        "mounted at /var" in warnings[0]

"""The per-build workspace: where stages leave their outputs and record that they finished.

Layout under ``work_dir``::

    <image name>-<12 hex of the spec path hash>/
        state.json          completed stages with their input hashes (written atomically)
        <stage>/...         each stage's outputs

A stage counts as done only once its record is in ``state.json``; the record is written
after the stage's outputs are in place, and replaced atomically, so an interrupted build
never leaves a state that claims work it did not finish.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import attrs

from imagecomposer.fsutil import atomic_write


@attrs.frozen
class StageRecord:
    fingerprint: str
    inputs: dict[str, str]
    seconds: float


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._state_path = root / "state.json"

    @classmethod
    def for_spec(cls, work_dir: Path, name: str, spec_path: Path | None) -> Workspace:
        ident = str(spec_path.resolve()) if spec_path is not None else name
        digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
        return cls(work_dir / f"{name}-{digest}")

    def stage_dir(self, stage: str) -> Path:
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def records(self) -> dict[str, StageRecord]:
        try:
            data: dict[str, Any] = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}
        out: dict[str, StageRecord] = {}
        for stage, rec in data.get("stages", {}).items():
            try:
                out[stage] = StageRecord(rec["fingerprint"], dict(rec["inputs"]),
                                         float(rec["seconds"]))
            except (KeyError, TypeError, ValueError):
                continue  # an unreadable record means "not done"
        return out

    def record(self, stage: str, record: StageRecord) -> None:
        records = self.records()
        records[stage] = record
        self._write(records)

    def forget(self, stage: str) -> None:
        records = self.records()
        if records.pop(stage, None) is not None:
            self._write(records)

    def _write(self, records: dict[str, StageRecord]) -> None:
        data = {"stages": {k: attrs.asdict(v) for k, v in sorted(records.items())}}
        atomic_write(self._state_path, json.dumps(data, indent=1, sort_keys=True))

    def remove_temp(self) -> None:
        """Remove scratch directories (``tmp*``) left by stages; outputs stay."""
        for child in self.root.glob("tmp*"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

"""A cluster worker with the stand-in stages: ``python -m tests.cluster.workerproc URL
CONFIG NAME VISIBILITY_TIMEOUT`` (what ``imagecomposer worker`` runs, with other stages)."""

from __future__ import annotations

import sys
from pathlib import Path

from imagecomposer.cluster.worker import WorkerSettings, run_worker
from imagecomposer.config import load_config
from tests.cluster.standins import STAGES

if __name__ == "__main__":
    url, config, name, timeout = sys.argv[1:5]
    secrets = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    run_worker(url, load_config(Path(config)).config,
               WorkerSettings(name=name, secrets_dir=secrets,
                              visibility_timeout=float(timeout)),
               stages=STAGES)

"""A cluster worker with the stand-in stages: ``python -m tests.cluster.workerproc URL
CONFIG NAME VISIBILITY_TIMEOUT`` (what ``imagecomposer worker`` runs, with other stages).

``$IMAGECOMPOSER_STANDIN_FREE=FILE``: the worker's free space is the number of bytes in FILE
(plenty while there is no FILE), looked at every :data:`SPACE_CHECK` seconds, with
:data:`MIN_FREE` needed (the test fills and empties a "disk" by writing FILE)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import attrs

from imagecomposer.cluster.worker import WorkerSettings, run_worker
from imagecomposer.config import load_config
from imagecomposer.config.model import Config
from tests.cluster.standins import STAGES

SPACE_CHECK = 0.25
MIN_FREE = 1 << 30


def standin_free(config: Config) -> int:
    path = Path(os.environ["IMAGECOMPOSER_STANDIN_FREE"])
    return int(path.read_text()) if path.exists() else 1 << 50


if __name__ == "__main__":
    url, config, name, timeout = sys.argv[1:5]
    secrets = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    settings = WorkerSettings(name=name, secrets_dir=secrets, visibility_timeout=float(timeout))
    if "IMAGECOMPOSER_STANDIN_FREE" in os.environ:
        settings = attrs.evolve(settings, free_space=standin_free, min_free=MIN_FREE,
                                space_check=SPACE_CHECK)
    run_worker(url, load_config(Path(config)).config, settings, stages=STAGES)

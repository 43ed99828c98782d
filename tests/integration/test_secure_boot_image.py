"""Secure Boot refuses what is not signed: the minimal example (its boot chain unsigned)
does not boot under OVMF with Secure Boot enforced and a db certificate enrolled.

The signed side, a real image signed with the spec's db key booting under Secure Boot
enforced, is test_verity_image.py's boot of conftest.verity_check_spec's image (and the
rootless test's boot of the same bytes as a user); both enroll the same certificate as here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecomposer.boot import boot
from imagecomposer.config.model import Config
from imagecomposer.foundation.errors import BootError
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec import Spec

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.boot, pytest.mark.slow]

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_unsigned_image_is_refused_under_secure_boot(config: Config, verity_check_spec: Path,
                                                     tmp_path: Path) -> None:
    spec = Spec.load(EXAMPLES / "debian-12-minimal.yml")
    out = tmp_path / "out"
    ImagePipeline(config).build(spec, BuildOptions(output_dir=out))
    with pytest.raises(BootError, match="Access Denied"):
        boot(out / "debian-12-minimal.raw", secure_boot=True, timeout=120,
             secure_boot_cert=verity_check_spec.parent / "db.crt")

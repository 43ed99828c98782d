"""One package cache and installed-tree cache for all image builds of a test session, and
the example images built once per session (``example_build``), for every test that reads
them (the acceptance test, inspect and compare, verity, the rootless builds' comparison)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imagecomposer.config import apply_overrides, load_config
from imagecomposer.config.model import Config
from imagecomposer.pipeline.build import BuildReport, ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.spec import Spec

EXAMPLES = Path(__file__).parents[2] / "examples"
Built = tuple[Spec, BuildReport, Path]  # the spec, its first build's report, the output dir

# A one-shot unit added to the verity example for the tests: prints what is mounted how, and
# what can be written, on the serial console before the login prompt.
VERITY_CHECK_UNIT = """[Unit]
Description=imagecomposer test: report the read-only root
After=local-fs.target
Before=getty.target serial-getty@ttyS0.service

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/sh -c 'echo "VERITY-CHECK root: $(findmnt -no SOURCE,OPTIONS /)"; \\
  echo "VERITY-CHECK var: $(findmnt -no OPTIONS /var)"; \\
  echo "VERITY-CHECK tmp: $(findmnt -no FSTYPE /tmp)"; \\
  if touch /etc/probe 2>/dev/null; then echo "VERITY-CHECK etc: writable"; \\
  else echo "VERITY-CHECK etc: read-only"; fi; \\
  touch /var/tmp/probe && echo "VERITY-CHECK var: writable"'

[Install]
WantedBy=multi-user.target
"""


@pytest.fixture(scope="session")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    base = tmp_path_factory.mktemp("ic")
    loaded = load_config(None, environ={})
    loaded = apply_overrides(loaded, {"core.cache_dir": str(base / "cache"),
                                      "core.work_dir": str(base / "work")}, "command line")
    return loaded.config


@pytest.fixture(scope="session")
def example_build(config: Config, tmp_path_factory: pytest.TempPathFactory
                  ) -> Callable[[str, Path | None], Built]:
    """``example_build(name, spec_path=None)``: the spec examples/NAME.yml (or the one at
    ``spec_path``) built once per session; later calls return the same build."""
    built: dict[str, Built] = {}

    def build(name: str, spec_path: Path | None = None) -> Built:
        if name not in built:
            spec = Spec.load(spec_path or EXAMPLES / f"{name}.yml")
            out = tmp_path_factory.mktemp(name) / "out"
            report = ImagePipeline(config).build(spec, BuildOptions(output_dir=out))
            built[name] = (spec, report, out)
        return built[name]

    return build


@pytest.fixture(scope="session")
def verity_check_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/debian-12-verity.yml with :data:`VERITY_CHECK_UNIT` added (verity.yml and
    verity-check.service in a directory of their own)."""
    work = tmp_path_factory.mktemp("verity-spec")
    (work / "verity-check.service").write_text(VERITY_CHECK_UNIT)
    text = (EXAMPLES / "debian-12-verity.yml").read_text()
    text = text.replace("  services:\n    enabled: [systemd-networkd]\n",
                        "  files:\n    - {source: ./verity-check.service, destination: "
                        "/etc/systemd/system/verity-check.service, mode: \"0644\"}\n"
                        "  services:\n    enabled: [systemd-networkd, verity-check]\n")
    assert "verity-check" in text
    (work / "verity.yml").write_text(text)
    return work / "verity.yml"

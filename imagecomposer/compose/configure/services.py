"""Enable and disable systemd units with ``systemctl --root`` (offline, no running systemd).

A unit that does not exist in the image is a clear error before systemctl runs: its own
message ("Unit file x.service does not exist.") is easy to miss in a build log.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from imagecomposer.compose.configure import paths
from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import UnitNotFound

UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system",
             "/usr/local/lib/systemd/system")
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".target", ".path", ".mount",
                 ".automount", ".swap", ".slice", ".scope", ".device")


def unit_name(name: str) -> str:
    """``sshd`` -> ``sshd.service``; names with a unit suffix are kept."""
    return name if name.endswith(UNIT_SUFFIXES) else f"{name}.service"


def unit_exists(tree: Path, name: str) -> bool:
    unit = unit_name(name)
    candidates = [unit]
    if "@" in unit:  # foo@bar.service is an instance of foo@.service
        prefix, rest = unit.split("@", 1)
        candidates.append(f"{prefix}@{rest[rest.rfind('.'):]}")
    return paths.installed(tree, *(f"{d}/{c}" for d in UNIT_DIRS for c in candidates))


def _systemctl(tree: Path, verb: str, units: list[str]) -> None:
    if not units:
        return
    for unit in units:
        if not unit_exists(tree, unit):
            raise UnitNotFound(
                f"Service not found: unit {unit} does not exist in the image "
                "(is the package that ships it in customizations.packages.install?)")
    runner.run([runner.require("systemctl", "systemd"), f"--root={tree}", verb, *units],
               what=f"systemctl {verb} {' '.join(units)}")


def enable(tree: Path, names: tuple[str, ...] | list[str]) -> None:
    _systemctl(tree, "enable", [unit_name(n) for n in names])


def disable(tree: Path, names: tuple[str, ...] | list[str]) -> None:
    _systemctl(tree, "disable", [unit_name(n) for n in names])


def apply(tree: Path, enabled: tuple[str, ...], disabled: tuple[str, ...], *,
          already: Collection[str] = ()) -> None:
    """Disable first, then enable: a unit named in both ends up enabled, as listed last.
    ``already``: units this build enabled before (the network's): not enabled twice."""
    done = {unit_name(n) for n in already}
    disable(tree, [n for n in disabled if n not in enabled])
    enable(tree, [n for n in enabled if unit_name(n) not in done])

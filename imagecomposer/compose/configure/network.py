"""Network configuration for systemd-networkd: DHCP by default, static addresses from the spec.

One ``.network`` file per spec interface (``/etc/systemd/network/NN-imagecomposer-I.network``,
in spec order so the first match wins as networkd orders by file name), then
systemd-networkd is enabled, and systemd-resolved with its stub resolv.conf when installed.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from imagecomposer.compose.configure import paths, services
from imagecomposer.foundation.errors import ComposeError
from imagecomposer.spec.model import Interface, Network

NETWORK_DIR = "/etc/systemd/network"


def network_file(interface: Interface) -> str:
    """The text of one .network file."""
    dhcp = {(True, True): "yes", (True, False): "ipv4", (False, True): "ipv6",
            (False, False): "no"}[(interface.dhcp4, interface.dhcp6)]
    lines = ["# written by imagecomposer from the spec (customizations.network)",
             "[Match]", f"Name={interface.match}", "", "[Network]", f"DHCP={dhcp}"]
    for address in interface.addresses:
        try:
            ipaddress.ip_interface(address)
        except ValueError as exc:
            raise ComposeError(f"invalid address {address!r}: {exc}") from exc
        if "/" not in address:
            raise ComposeError(f"address {address!r} needs a prefix length (e.g. /24)")
        lines.append(f"Address={address}")
    for value in ((interface.gateway,) if interface.gateway else ()) + interface.dns:
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ComposeError(f"invalid gateway or DNS server {value!r}") from exc
    if interface.gateway:
        lines.append(f"Gateway={interface.gateway}")
    lines += [f"DNS={d}" for d in interface.dns]
    if not interface.addresses and not interface.dhcp4 and not interface.dhcp6:
        lines.append("LinkLocalAddressing=ipv6")
    return "\n".join(lines) + "\n"


def configure(tree: Path, network: Network) -> list[Path]:
    """Write the .network files and enable networkd (and resolved if installed)."""
    if not services.unit_exists(tree, "systemd-networkd.service"):
        raise ComposeError("network configuration needs systemd-networkd (package systemd)")
    written = []
    for i, interface in enumerate(network.interfaces):
        written.append(paths.write(
            tree, f"{NETWORK_DIR}/{10 + i:02d}-imagecomposer-{i}.network",
            network_file(interface)))
    units = enabled_units(tree)
    if "systemd-resolved.service" in units:
        paths.symlink(tree, "/etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf")
    services.enable(tree, units)
    return written


def enabled_units(tree: Path) -> list[str]:
    """The units :func:`configure` enables: networkd, and resolved when it is installed."""
    units = ["systemd-networkd.service"]
    if services.unit_exists(tree, "systemd-resolved.service"):
        units.append("systemd-resolved.service")
    return units

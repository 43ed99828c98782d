"""The short repr and the Jupyter table of a :class:`~imagecomposer.spec.model.Spec`.

Both show what the spec builds — names, counts, paths — and never a secret: no password
hash, SSH key, inline file content, variable value or URL credentials (paths to key and
passphrase files are shown: they are where secrets live, not secrets).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imagecomposer.foundation import display
from imagecomposer.foundation.redact import redact_urls

if TYPE_CHECKING:
    from imagecomposer.spec.model import Partition, Spec, User


def spec_repr(spec: Spec) -> str:
    """``Spec(name='web', os='debian 12 x86_64', packages=6, users=1, formats=raw,qcow2)``."""
    base = spec.image.base
    c = spec.customizations
    return display.call(
        "Spec", name=spec.image.name, os=f"{base.os} {base.version} {base.arch}",
        packages=len(c.packages.install), users=len(c.users),
        formats=display.Bare(display.joined(spec.output.formats)))


def _user(user: User) -> str:
    facts = [f"uid {user.uid}" if user.uid is not None else "",
             "sudo" if user.sudo else "",
             "password set" if user.password_hash else "",
             f"{len(user.ssh_keys)} SSH key(s)" if user.ssh_keys else ""]
    shown = ", ".join(f for f in facts if f)
    return f"{user.name} ({shown})" if shown else user.name


def _partition(part: Partition) -> str:
    size = "rest" if part.size is None else display.size(part.size)
    text = f"{part.name}: {part.type} {size} {part.filesystem}"
    if part.mountpoint:
        text += f" {part.mountpoint}"
    if part.encryption is not None:
        text += " luks2"
    if part.volume_group is not None:
        text += f" (vg {part.volume_group.name}: " + ", ".join(
            lv.name for lv in part.volume_group.logical_volumes) + ")"
    return text


def spec_html(spec: Spec) -> str:
    """A two-column table of the spec for notebooks."""
    image, c, out = spec.image, spec.customizations, spec.output
    base = image.base
    sec = c.security
    rows: list[tuple[str, object]] = [
        ("image", f"{image.name} {image.version}"),
        ("base", f"{base.os} {base.version} {base.arch} ({base.type})"),
        ("install", display.joined(c.packages.install, limit=30, sep=", ") or "-"),
        ("remove", display.joined(c.packages.remove, limit=30, sep=", ") or "-"),
        ("recommends", c.packages.recommends),
        ("kernel", c.kernel.package or "profile default"),
        ("bootloader", c.bootloader),
        ("users", ", ".join(_user(u) for u in c.users) or "-"),
        ("root password", "set" if c.root_password_hash else "locked"),
        ("hostname", c.hostname or "-"),
        ("services", ", ".join([*c.services.enabled, *(f"-{s}" for s in c.services.disabled)])
         or "-"),
        ("files", len(c.files)),
        ("repositories", ", ".join(f"{r.name} ({redact_urls(r.url)})"
                                   for r in spec.repositories) or "-"),
        ("disk", f"{display.size(spec.disk.size)} {spec.disk.partition_table}"),
        ("partitions", "; ".join(_partition(p) for p in spec.disk.partitions) or "default"),
        ("security", f"selinux {sec.selinux}, read-only root {sec.read_only_root}, "
                     f"Secure Boot {'on' if sec.secure_boot else 'off'}"),
        ("formats", f"{', '.join(out.formats)} (compression {out.compression})"),
        ("SBOM", ", ".join(out.sbom)),
        ("signing", f"{out.sign.key} ({out.sign.algorithm})" if out.sign else "-"),
        ("stages", " → ".join(spec.build.stages)),
        ("variables", ", ".join(name for name, _ in spec.variables) or "-"),
        ("file", spec.path or "-"),
    ]
    return display.html_fields(f"Spec {image.name}", rows)

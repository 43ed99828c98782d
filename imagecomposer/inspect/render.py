"""Text, JSON, YAML and HTML (Jupyter) forms of inspect and compare results."""

from __future__ import annotations

import html
import io
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML

from imagecomposer.foundation.settings import REPORT_FORMATS
from imagecomposer.foundation.units import human_size

if TYPE_CHECKING:
    from imagecomposer.inspect.compare import CompareReport
    from imagecomposer.inspect.report import InspectReport

FORMATS = REPORT_FORMATS


def size(value: int | None) -> str:
    return "-" if value is None else human_size(value)


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_yaml(data: dict[str, Any]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return lines


def _mode(mode: int | None) -> str:
    return "-" if mode is None else f"{mode:04o}"


def inspect_text(r: InspectReport) -> str:
    out: list[str] = []
    img = r.image
    out.append(f"Image: {img.path}")
    out.append(f"  format {img.format}" + (f", {img.compression}-compressed"
                                           if img.compression != "none" else "")
               + f", file {size(img.file_size)}, disk {size(img.disk_size)}"
               + (f", sha256 {img.sha256}" if img.sha256 else ""))
    t = r.partition_table
    out.append(f"\nPartition table: {t.type}" + (f" ({t.id})" if t.id else ""))
    rows = [[str(p.number), p.name or "-", p.type, size(p.size), str(p.start),
             p.filesystem.type if p.filesystem else "-",
             (p.filesystem.uuid or "-") if p.filesystem else "-",
             size(p.filesystem.used) if p.filesystem else "-",
             (p.filesystem.mountpoint or "-") if p.filesystem else "-"]
            for p in t.partitions]
    out += ["  " + line for line in table(rows, ["#", "name", "type", "size", "start", "fs",
                                                 "uuid", "used", "mount"])]
    if r.os:
        out.append(f"\nOS: {r.os.pretty_name or r.os.name or r.os.id}")
    out.append(f"Hostname: {r.hostname or '-'}   Time zone: {r.timezone or '-'}   "
               f"Locale: {r.locale or '-'}")
    for k in r.kernels:
        out.append(f"Kernel: {k.version}  image {k.image or '-'}  initrd "
                   f"{', '.join(k.initrds) or '-'}")
    b = r.bootloader
    out.append(f"\nBoot loader: {b.type}" + (f" (default {b.default})" if b.default else ""))
    for e in b.entries:
        out.append(f"  {e.kind} {e.title or e.id}: {e.linux or '-'}")
        if e.options:
            out.append(f"    options {e.options}")
    if r.secure_boot:
        out.append("\nSecure Boot:")
        for binary in r.secure_boot:
            if not binary.signed:
                out.append(f"  {binary.path}: unsigned")
            else:
                state = {True: "valid", False: "INVALID", None: "unchecked"}[binary.verified]
                signer = binary.signers[0].subject if binary.signers else "?"
                out.append(f"  {binary.path}: signed by {signer} ({state})")
    for v in r.verity:
        out.append(f"\ndm-verity: data partition {v.data_partition}, hash partition "
                   f"{v.hash_partition}: {v.status}" + (f" ({v.detail})" if v.detail else ""))
        out.append(f"  roothash {v.roothash or '-'}")
    out.append(f"\nUsers ({len(r.users)}):")
    people = [u for u in r.users if u.uid == 0 or u.uid >= 1000] or list(r.users)
    out += ["  " + line for line in table(
        [[u.name, str(u.uid), str(u.gid), u.shell, ",".join(u.groups) or "-", u.password]
         for u in people], ["name", "uid", "gid", "shell", "groups", "password"])]
    if len(people) < len(r.users):
        out.append(f"  (and {len(r.users) - len(people)} system users)")
    s = r.services
    out.append(f"\nServices enabled ({len(s.enabled)}): {', '.join(s.enabled) or '-'}")
    out.append(f"Services masked: {', '.join(s.masked) or '-'}")
    p = r.packages
    out.append(f"\nPackages: {p.count} ({p.manager or 'no package database'})")
    for sbom in r.sboms:
        out.append(f"Embedded SBOM: {sbom.path} ({sbom.format}, {sbom.packages} packages)")
    if r.sidecar:
        c = r.sidecar
        out.append(f"\nBuilt by imagecomposer: {c.name} {c.image_version} at {c.built_at}")
        out.append(f"  manifest {c.manifest}" + (
            f" (hash {'matches' if c.hash_matches else 'DOES NOT MATCH'})"
            if c.hash_matches is not None else ""))
        if c.lock:
            state = {True: "matches the installed packages",
                     False: "DIFFERS from the installed packages", None: ""}[c.lock_matches]
            out.append(f"  lock {c.lock} ({c.lock_packages} packages) {state}".rstrip())
    for problem in r.problems:
        out.append(f"Problem: {problem}")
    return "\n".join(out) + "\n"


def _change(record: Any) -> str:
    if record.kind == "symlink":
        return f"-> {record.target}"
    return (f"{record.kind} {_mode(record.mode)} {record.uid}:{record.gid} "
            f"{record.size}" + (f" {record.sha256[:12]}" if record.sha256 else ""))


def compare_text(r: CompareReport) -> str:
    out = [f"A: {r.a.path} ({r.a.kind}{', ' + r.a.format if r.a.format else ''})",
           f"B: {r.b.path} ({r.b.kind}{', ' + r.b.format if r.b.format else ''})",
           f"Verdict: {r.verdict}" + (f" (sha256 {r.a.sha256})" if r.identical else "")]
    s = r.summary
    out.append(f"Summary: packages +{s.packages_added} -{s.packages_removed} "
               f"~{s.packages_changed}; files +{s.files_added} -{s.files_removed} "
               f"~{s.files_changed}; configuration changes {s.config_changes}")
    for c in r.config or ():
        if c.added or c.removed:
            out.append(f"\n{c.field}:")
            out += [f"  - {x}" for x in c.removed] + [f"  + {x}" for x in c.added]
        else:
            out.append(f"\n{c.field}: {c.a!r} -> {c.b!r}")
    if r.packages and r.mode != "files":
        p = r.packages
        if p.added or p.removed or p.changed:
            out.append("\nPackages:")
        out += [f"  + {x.name} {x.version} {x.arch}" for x in p.added]
        out += [f"  - {x.name} {x.version} {x.arch}" for x in p.removed]
        out += [f"  ~ {x.name} {x.a} -> {x.b}" for x in p.changed]
    for f in r.files or ():
        where = f.mountpoint or f"partition {f.partition_a}"
        if f.added or f.removed or f.changed:
            out.append(f"\nFiles in {where} ({f.filesystem}):")
        out += [f"  + {x.path}  {_change(x)}" for x in f.added]
        out += [f"  - {x.path}" for x in f.removed]
        out += [f"  ~ {x.path}  ({', '.join(x.fields)}) {_change(x.a)} -> {_change(x.b)}"
                for x in f.changed]
    return "\n".join(out) + "\n"


def _html_table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def inspect_html(r: InspectReport) -> str:
    parts = [f"<h3>{html.escape(r.image.path)}</h3>",
             f"<p>{html.escape(r.image.format)}, {html.escape(size(r.image.disk_size))}; "
             f"{html.escape(r.os.pretty_name or '') if r.os else 'no OS found'}; "
             f"hostname {html.escape(r.hostname or '-')}; boot loader "
             f"{html.escape(r.bootloader.type)}; {r.packages.count} packages</p>",
             _html_table([[p.number, p.name, p.type, size(p.size),
                           p.filesystem.type if p.filesystem else "-",
                           (p.filesystem.mountpoint or "-") if p.filesystem else "-"]
                          for p in r.partition_table.partitions],
                         ["#", "name", "type", "size", "filesystem", "mount"])]
    if r.kernel_cmdline:
        parts.append("<p>kernel command line: <code>"
                     + html.escape(" | ".join(r.kernel_cmdline)) + "</code></p>")
    if r.secure_boot:
        parts.append(_html_table([[b.path, "yes" if b.signed else "no",
                                   b.signers[0].subject if b.signers else "-",
                                   {True: "valid", False: "invalid", None: "-"}[b.verified]]
                                  for b in r.secure_boot],
                                 ["EFI binary", "signed", "signer", "signature"]))
    return "\n".join(parts)


def compare_html(r: CompareReport) -> str:
    s = r.summary
    parts = [f"<h3>{html.escape(r.a.path)} ↔ {html.escape(r.b.path)}: "
             f"{html.escape(r.verdict)}</h3>",
             _html_table([["packages", s.packages_added, s.packages_removed, s.packages_changed],
                          ["files", s.files_added, s.files_removed, s.files_changed]],
                         ["", "added", "removed", "changed"])]
    if r.packages and (r.packages.added or r.packages.removed or r.packages.changed):
        rows = ([["+", p.name, "", p.version] for p in r.packages.added]
                + [["-", p.name, p.version, ""] for p in r.packages.removed]
                + [["~", p.name, p.a, p.b] for p in r.packages.changed])
        parts.append(_html_table(rows, ["", "package", "A", "B"]))
    if r.config:
        parts.append(_html_table([[c.field, c.a, c.b] for c in r.config],
                                 ["setting", "A", "B"]))
    for f in r.files or ():
        rows = ([["+", x.path, ""] for x in f.added] + [["-", x.path, ""] for x in f.removed]
                + [["~", x.path, ", ".join(x.fields)] for x in f.changed])
        if rows:
            parts.append(f"<p>files in {html.escape(f.mountpoint or str(f.partition_a))}</p>"
                         + _html_table(rows[:500], ["", "path", "changed"]))
    return "\n".join(parts)

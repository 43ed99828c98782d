"""A spec and the files it references, as one content-addressed tar (what a task carries).

Layout inside the tar: the spec at its file name, each referenced file at its path relative
to the spec's directory (so the spec's relative paths resolve the same on the worker).
Deterministic: sorted members, mtime 0, uid/gid 0, fixed modes; the bundle's SHA256 names
it. **Secrets never travel**: the signing key, the Secure Boot key and the disk encryption's
passphrase and key files are left out and listed by relative path; the worker takes them
from its own secrets directory (:func:`place_secrets`).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

import attrs

from imagecomposer.foundation.errors import ClusterError
from imagecomposer.spec.model import Spec, key_material


@attrs.frozen(repr=False)
class Bundle:
    data: bytes
    digest: str  # SHA256 of data
    spec: str  # the spec's name inside the bundle
    secrets: tuple[str, ...]  # relative paths the worker must supply

    def __repr__(self) -> str:
        return (f"Bundle(spec={self.spec!r}, digest={self.digest[:12]!r}, "
                f"size={len(self.data)}, secrets={len(self.secrets)})")


def secret_files(spec: Spec) -> list[Path]:
    """The files of ``spec`` that hold secrets (never put in a bundle)."""
    found: list[Path] = []
    if spec.output.sign is not None:
        found.append(spec.output.sign.key)
    if spec.customizations.security.secure_boot is not None:
        found.append(spec.customizations.security.secure_boot.key)
    found += key_material(spec.disk)
    return found


def _relative(path: Path, base: Path, spec_file: Path) -> str:
    try:
        rel = path.resolve().relative_to(base)
    except ValueError:
        raise ClusterError(f"{spec_file}: {path} is outside the spec's directory; a spec "
                           f"built on a cluster may reference only files under "
                           f"{base}") from None
    return rel.as_posix()


def make_bundle(spec_file: Path, spec: Spec) -> Bundle:
    """The bundle of ``spec`` (loaded from ``spec_file``)."""
    base = spec_file.resolve().parent
    secrets = sorted({_relative(p, base, spec_file) for p in secret_files(spec)})
    members = {spec_file.name: spec_file.resolve()}
    for path in spec.referenced_files():
        rel = _relative(path, base, spec_file)
        if rel not in secrets:
            members[rel] = path.resolve()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            data = members[name].read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if os.access(members[name], os.X_OK) else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return Bundle(data, hashlib.sha256(data).hexdigest(), spec_file.name, tuple(secrets))


def unpack(data: bytes, digest: str, dest: Path) -> None:
    """Check ``data`` against ``digest`` and extract it into ``dest`` (regular files only,
    no absolute or parent paths)."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ClusterError(f"the spec bundle is damaged: its SHA256 is {actual}, the task "
                           f"says {digest}")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar.getmembers():
            name = PurePosixPath(member.name)
            if not member.isfile() or name.is_absolute() or ".." in name.parts:
                raise ClusterError(f"the spec bundle holds an unsafe member: {member.name}")
            target = dest / Path(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with target.open("wb") as out:
                shutil.copyfileobj(source, out)
            target.chmod(member.mode & 0o755)


def place_secrets(secrets: tuple[str, ...] | list[str], secrets_dir: Path | None,
                  dest: Path) -> None:
    """Copy each secret the spec needs from the worker's ``secrets_dir`` (same relative
    path) into the unpacked bundle at ``dest`` (mode 0600)."""
    for rel in secrets:
        name = PurePosixPath(rel)
        if name.is_absolute() or ".." in name.parts:
            raise ClusterError(f"the task names an unsafe secret path: {rel}")
        source = secrets_dir / Path(*name.parts) if secrets_dir is not None else None
        if source is None or not source.is_file():
            where = secrets_dir if secrets_dir is not None else "(no --secrets directory)"
            raise ClusterError(f"this worker has no secret {rel} in its secrets directory "
                               f"{where}; secrets never travel with a build, each worker "
                               f"reads them from its own configuration")
        target = dest / Path(*name.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(source.read_bytes())

"""The build manifest: what was built, from what, and how to check it.

One JSON document per build. Besides provenance (tool version, normalized spec without
secrets and its hash, lock hash, base OS, partition layout with UUIDs, stage timings) it
carries the fields an A/B updater needs to accept the image (schema_version, image_version,
built_at, arch, size_bytes, hash, hash_alg, signature, sig_alg, min_current_version), taken
from the primary artifact (the first requested format).

``built_at`` is the build epoch, never the wall clock; ``build_epoch`` holds it in seconds and
``build_epoch_source`` where it came from (``SOURCE_DATE_EPOCH``, ``lock``: the newest date
of the repositories' metadata, or ``default``; docs/reproducibility.md).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import attrs

from imagecomposer import __version__
from imagecomposer.foundation.epoch import epoch_datetime, resolve
from imagecomposer.foundation.errors import ExportError
from imagecomposer.foundation.fsutil import atomic_write

if TYPE_CHECKING:
    from imagecomposer.compose.layout import Layout
    from imagecomposer.export.exporter import Artifact

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
REDACTED = "<redacted>"
# Keys whose values are secrets (crypt hashes, passphrases, credentials) wherever they occur.
SECRET_KEYS = frozenset({"password", "password_hash", "root_password_hash", "passphrase",
                         "secret", "token", "credentials", "private_key"})


def build_time(epoch: int | None = None) -> datetime.datetime:
    """The build's clock as a UTC datetime: ``epoch`` (default
    :func:`~imagecomposer.foundation.epoch.build_epoch`), never the wall clock."""
    return epoch_datetime(resolve(epoch))


def iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Any) -> Any:
    """JSON-able plain data: Paths as strings, tuples as lists, attrs classes as dicts."""
    if attrs.has(type(value)):
        return _plain(attrs.asdict(value, recurse=False))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, PurePath):
        return str(value)
    return value


def redact(data: Any) -> Any:
    """A copy of ``data`` with every secret value replaced by ``<redacted>``."""
    if isinstance(data, Mapping):
        return {k: (REDACTED if k in SECRET_KEYS and v not in (None, "") else redact(v))
                for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v) for v in data]
    return data


def canonical_json(data: Any) -> str:
    return json.dumps(_plain(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def normalize_spec(spec_data: Mapping[str, Any]) -> dict[str, Any]:
    """The spec as plain, key-sorted data with secrets removed."""
    result: dict[str, Any] = json.loads(canonical_json(redact(_plain(spec_data))))
    return result


def layout_data(layout: Layout) -> dict[str, Any]:
    plain: dict[str, Any] = _plain(layout)
    return plain


def build_manifest(*, spec_data: Mapping[str, Any], artifacts: Sequence[Artifact],
                   image_name: str, image_version: str = "0.0.0", arch: str = "x86_64",
                   base_os: Mapping[str, str] | None = None, lock_hash: str | None = None,
                   layout: Layout | Mapping[str, Any] | None = None,
                   output_dir: Path | None = None, min_current_version: str | None = None,
                   epoch: int | None = None, epoch_source: str | None = None
                   ) -> dict[str, Any]:
    """The manifest document. ``output_dir`` (where the artifacts and their ``.sig`` files
    are) lets the A/B ``signature`` field carry the primary artifact's signature. The spec
    is stored with its secrets redacted, and ``spec_hash`` is the hash of exactly that."""
    spec = normalize_spec(spec_data)
    epoch = resolve(epoch)
    images = [a for a in artifacts if not a.format.startswith(("sbom", "manifest", "extra"))]
    primary = images[0] if images else None
    signature = None
    if primary is not None and primary.signature and output_dir is not None:
        sig_path = output_dir / primary.signature
        if sig_path.is_file():
            signature = base64.b64encode(sig_path.read_bytes()).decode()
    return {
        # A/B update fields
        "schema_version": SCHEMA_VERSION,
        "image_version": image_version,
        "built_at": iso(build_time(epoch)),
        "arch": arch,
        "size_bytes": primary.size if primary else None,
        "hash": primary.sha256 if primary else None,
        "hash_alg": "sha256",
        "signature": signature,
        "sig_alg": primary.sig_alg if primary else None,
        "min_current_version": min_current_version,
        "image": primary.name if primary else None,
        # provenance
        "name": image_name,
        "tool": {"name": "imagecomposer", "version": __version__},
        "build_epoch": epoch,
        "build_epoch_source": epoch_source,
        "base_os": dict(base_os or {}),
        "spec": spec,
        "spec_hash": hashlib.sha256(canonical_json(spec).encode()).hexdigest(),
        "lock_hash": lock_hash,
        "layout": (dict(layout) if isinstance(layout, Mapping)
                   else layout_data(layout) if layout is not None else None),
        "artifacts": [attrs.asdict(a) for a in artifacts],
    }


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> Path:
    """Write the manifest as stable, indented JSON (atomically)."""
    text = json.dumps(_plain(manifest), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise ExportError(f"cannot write manifest {path}: {exc.strerror}") from None
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read manifest {path}: {exc}") from None
    return data

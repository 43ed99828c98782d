"""The image cache's records in the shared store (``index/images/NAME/KEY.json``).

A record names the files of the image whose inputs hash to KEY (the image cache's key),
each by its SHA256 (the files are ``images/`` objects of the shared store). It is sealed
with the publishing host's ``storage.seal_key``: a host uses a record only when its own key
seals it (the hosts of a cluster share the key, as machines sharing a cache do), so a
writer of the shared store without the key cannot make a build use bytes of theirs; each
file is then checked against its SHA256 as it is copied (:mod:`imagecomposer.cache.images`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imagecomposer.cache.shared import INDEX_FORMAT, ObjectStore, index_files, index_record
from imagecomposer.foundation.seal import SealKey

KIND = "images"  # the store's object kind and index
SEALS = "shared-images"  # what the records' seals name


def record(shared: ObjectStore, seal_key: SealKey, image: str, name: str, digest: str
           ) -> tuple[list[tuple[str, str]] | None, str]:
    """The (file name, SHA256) of each file of the record of ``image`` (stored as
    ``name``) and key ``digest`` if it is well formed and sealed with ``seal_key``, else
    None and why not: "" when there is no record, "damaged", or that the seal does not
    hold."""
    data = shared.read_index(KIND, name, digest)
    if data is None:
        return None, ""
    found = index_record(data)
    files = None if found is None else index_files(found, image, digest)
    if found is None or files is None:
        return None, "damaged"
    unsealed = {k: v for k, v in found.items() if k != "seal"}
    if not seal_key.check(SEALS, f"{name}/{digest}", unsealed, found.get("seal")):
        return None, ("not sealed with this host's key (storage.seal_key): made with "
                      "another key, or forged")
    return files, ""


def publish(shared: ObjectStore, seal_key: SealKey, image: str, name: str, digest: str,
            inputs: Sequence[tuple[str, str]], files: Sequence[tuple[str, int, str, Path]]
            ) -> bool:
    """Publish an image's ``files`` (name, size, SHA256, path) by their SHA256, then its
    sealed record (a reader never finds a record whose files are not all there); False
    when a good record is there already (one that does not hold is replaced)."""
    if record(shared, seal_key, image, name, digest)[0] is not None:
        return False
    for _, _, sha256, path in files:
        shared.publish(KIND, sha256, path)
    data: dict[str, Any] = {
        "format": INDEX_FORMAT, "name": image, "digest": digest,
        "inputs": [list(pair) for pair in inputs],
        "files": [{"name": n, "size": size, "sha256": sha256} for n, size, sha256, _ in files]}
    data["seal"] = seal_key.seal(SEALS, f"{name}/{digest}", data)
    shared.publish_index(KIND, name, digest, json.dumps(data, indent=1, sort_keys=True).encode())
    return True

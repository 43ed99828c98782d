"""Spec bundles: content-addressed, deterministic, the referenced files travel, secrets do
not (the worker takes them from its own secrets directory), unsafe members are refused."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from imagecomposer.cluster import bundle, wire
from imagecomposer.foundation.errors import ClusterError
from imagecomposer.foundation.events import PackageFetched, StageStarted
from imagecomposer.spec.model import Spec

KEY = b"-----BEGIN PRIVATE KEY-----\nnot a real key but secret bytes\n"


def signed_spec(directory: Path) -> Path:
    (directory / "files").mkdir(parents=True)
    (directory / "files" / "motd").write_text("hello\n")
    (directory / "keys").mkdir()
    (directory / "keys" / "sign.pem").write_bytes(KEY)
    path = directory / "signed.yml"
    path.write_text("image: {name: signed, base: {os: debian, version: '12'}}\n"
                    "customizations:\n"
                    "  files: [{source: ./files/motd, destination: /etc/motd}]\n"
                    "output: {formats: [raw], sign: {key: ./keys/sign.pem}}\n")
    return path


def test_referenced_files_travel_and_secrets_do_not(tmp_path: Path) -> None:
    path = signed_spec(tmp_path / "src")
    made = bundle.make_bundle(path, Spec.load(path))
    assert made.secrets == ("keys/sign.pem",)
    with tarfile.open(fileobj=io.BytesIO(made.data)) as tar:
        assert sorted(tar.getnames()) == ["files/motd", "signed.yml"]
    assert KEY not in made.data
    # deterministic: the same spec, the same bundle
    assert bundle.make_bundle(path, Spec.load(path)).digest == made.digest

    dest = tmp_path / "worker"
    bundle.unpack(made.data, made.digest, dest)
    with pytest.raises(ClusterError, match=r"no secret keys/sign\.pem"):
        bundle.place_secrets(made.secrets, tmp_path / "empty", dest)
    secrets = tmp_path / "secrets"
    (secrets / "keys").mkdir(parents=True)
    (secrets / "keys" / "sign.pem").write_bytes(KEY)
    bundle.place_secrets(made.secrets, secrets, dest)
    assert (dest / "keys" / "sign.pem").stat().st_mode & 0o777 == 0o600
    assert Spec.load(dest / "signed.yml").output.sign is not None


def test_a_damaged_or_hostile_bundle_is_refused(tmp_path: Path) -> None:
    path = signed_spec(tmp_path / "src")
    made = bundle.make_bundle(path, Spec.load(path))
    with pytest.raises(ClusterError, match="damaged"):
        bundle.unpack(made.data[:-1] + b"x", made.digest, tmp_path / "a")
    hostile = io.BytesIO()
    with tarfile.open(fileobj=hostile, mode="w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    data = hostile.getvalue()
    with pytest.raises(ClusterError, match="unsafe"):
        bundle.unpack(data, hashlib.sha256(data).hexdigest(), tmp_path / "b" / "c")
    assert not (tmp_path / "b" / "escape").exists()
    with pytest.raises(ClusterError, match="unsafe secret"):
        bundle.place_secrets(["../../etc/shadow"], tmp_path, tmp_path / "d")


def test_a_file_outside_the_spec_directory_cannot_travel(tmp_path: Path) -> None:
    (tmp_path / "motd").write_text("x")
    (tmp_path / "spec").mkdir()
    path = tmp_path / "spec" / "s.yml"
    path.write_text("image: {name: s, base: {os: debian, version: '12'}}\n"
                    f"customizations: {{files: [{{source: {tmp_path}/motd, "
                    "destination: /etc/motd}]}\n")
    spec = Spec.load(path, allowed_paths=(tmp_path,))
    with pytest.raises(ClusterError, match="outside the spec's directory"):
        bundle.make_bundle(path, spec)


def test_events_round_trip_and_nothing_else_is_built_from_a_message() -> None:
    for event in (StageStarted("first run", build="b", stage="validate"),
                  PackageFetched("bash", Path("/x/bash.deb"), 3, True, build="b")):
        assert wire.decode(wire.encode_event(event)) == event
    with pytest.raises(ValueError, match="not a build event"):
        wire.decode('{"kind": "Path", "fields": {}}')
    assert wire.decode(wire.encode_note("started", worker="w1")) == {"note": "started",
                                                                     "worker": "w1"}

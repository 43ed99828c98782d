"""What each stage's typed inputs hold, and that a stage cannot read beyond them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import attrs
import pytest

from imagecomposer.config.model import Config, Core, ProviderConfig
from imagecomposer.foundation.epoch import DEFAULT_EPOCH
from imagecomposer.foundation.fingerprint import fingerprint, fingerprint_fields
from imagecomposer.lock import Lock, LockedRepository
from imagecomposer.pipeline.context import BuildContext
from imagecomposer.pipeline.inputs import (
    compose_input,
    configuration_input,
    finalize_input,
    provenance_configuration,
    sign_input,
    validate_input,
)
from imagecomposer.spec.model import (
    Base,
    Build,
    BuildCache,
    Customizations,
    Image,
    Output,
    Sign,
    Spec,
)

EPOCH = 1_700_000_000


def make_spec(tmp_path: Path) -> Spec:
    return Spec(image=Image("web", Base("debian", "12"), "1.2.3"),
                customizations=Customizations(hostname="web"),
                output=Output(formats=("qcow2",), compression="zstd", sbom=("cyclonedx",)),
                build=Build(cache=BuildCache(use_image_cache=False), stages=("validate",)),
                variables=(("who", "me"),), base_dir=tmp_path)


def test_the_configuration_stage_composes_from_its_own_sections_only(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    config = Config(core=Core(allowed_paths=(tmp_path / "shared",)))
    value = configuration_input(spec, config, "ab" * 32, {"compose": "cd" * 32},
                                epoch=EPOCH)
    rebuilt = value.spec()
    assert rebuilt.image == spec.image and rebuilt.customizations == spec.customizations
    assert rebuilt.output.sbom == ("cyclonedx",) and rebuilt.directory == tmp_path
    # outside the value: at their defaults, whatever the spec says
    assert rebuilt.output.formats == Output().formats and rebuilt.build == Build()
    assert rebuilt.variables == ()
    operational = Config(core=Core(cache_dir=tmp_path / "cache", parallel=3))
    composed = value.config(operational)
    assert composed.core.cache_dir == tmp_path / "cache" and composed.core.parallel == 3
    assert composed.core.allowed_paths == (tmp_path / "shared",)
    assert set(composed.providers) == {"debian"}
    # output and build settings do not rerun it
    other = attrs.evolve(spec, output=attrs.evolve(spec.output, formats=("vhdx",)),
                         build=Build())
    assert fingerprint(configuration_input(other, config, "ab" * 32, {"compose": "cd" * 32},
                                           epoch=EPOCH)) == fingerprint(value)


def test_finalize_and_validate_hold_the_whole_spec_sign_its_section(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    assert finalize_input(spec, "ab", {}, epoch=(EPOCH, "lock")).spec == spec
    assert validate_input(spec, Config()).spec == spec
    key, passphrase = tmp_path / "key.pem", tmp_path / "pass"
    key.write_text("PRIVATE KEY")
    passphrase.write_text("one\n")
    signed = attrs.evolve(spec, output=Output(sign=Sign(key, passphrase_file=passphrase)))
    before = fingerprint_fields(sign_input(signed, {"configuration": "x"}))
    assert "PRIVATE KEY" not in str(before) and before.fields["sign.key"]
    passphrase.write_text("two\n")
    after = fingerprint_fields(sign_input(signed, {"configuration": "x"}))
    assert [k for k in before.fields if before.fields[k] != after.fields[k]] == \
        ["sign.passphrase_file"]


def test_the_build_epoch_is_an_input_of_every_stage_whose_outputs_hold_times(
        tmp_path: Path) -> None:
    """Another SOURCE_DATE_EPOCH reruns compose, configuration and finalize (and misses the
    image cache, keyed by these inputs) instead of reusing outputs of another clock."""
    spec, config = make_spec(tmp_path), Config()
    assert fingerprint(compose_input("ab", epoch=EPOCH)) != \
        fingerprint(compose_input("ab", epoch=EPOCH + 1))
    assert fingerprint(configuration_input(spec, config, "ab", {}, epoch=EPOCH)) != \
        fingerprint(configuration_input(spec, config, "ab", {}, epoch=EPOCH + 1))
    assert fingerprint(finalize_input(spec, "ab", {}, epoch=(EPOCH, "lock"))) != \
        fingerprint(finalize_input(spec, "ab", {}, epoch=(EPOCH + 1, "lock")))
    # the manifest records the source: the same number from elsewhere is another manifest
    assert fingerprint(finalize_input(spec, "ab", {}, epoch=(EPOCH, "lock"))) != \
        fingerprint(finalize_input(spec, "ab", {}, epoch=(EPOCH, "SOURCE_DATE_EPOCH")))


def test_the_provenance_records_the_provider_and_finalize_reruns_when_it_changes(
        tmp_path: Path) -> None:
    """The signed provenance records the image OS's provider settings: they are finalize's
    input, and the keyring is recorded by content, never by its host path."""
    spec = make_spec(tmp_path)
    keyring = tmp_path / "archive.gpg"
    keyring.write_bytes(b"keyring")
    config = Config(providers={"debian": ProviderConfig(mirror="http://mirror.invalid/d",
                                                        keyring=keyring)})
    inputs = finalize_input(spec, "ab", {}, epoch=(EPOCH, "lock"), config=config)
    other = attrs.evolve(config, providers={"debian": ProviderConfig(keyring=keyring)})
    assert fingerprint(inputs) != fingerprint(
        finalize_input(spec, "ab", {}, epoch=(EPOCH, "lock"), config=other))
    recorded = provenance_configuration(inputs.provider)
    assert recorded == {"provider": {
        "kind": "deb", "mirror": "http://mirror.invalid/d", "security_mirror": "auto",
        "check_valid_until": True,
        "keyring": {"sha256": hashlib.sha256(b"keyring").hexdigest()}}}
    assert str(tmp_path) not in repr(recorded)
    assert provenance_configuration(None) == {}


class LockOnly:
    """What BuildContext.epoch reads of a build context: its lock."""

    def __init__(self, lock: Lock) -> None:
        self._the_lock = lock

    def lock(self) -> Lock:
        return self._the_lock


def test_a_build_takes_the_newest_repository_date_unless_source_date_epoch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def lock(*dates: int | None) -> Lock:
        return Lock(os="debian", version="12", arch="amd64", kind="deb", packages=(),
                    repositories=tuple(LockedRepository(f"r{i}", f"file:///r{i}", "deb",
                                                        date=d) for i, d in enumerate(dates)))

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    epoch = BuildContext.epoch
    assert epoch(LockOnly(lock(EPOCH, EPOCH + 50, None))) == (EPOCH + 50, "lock")
    assert epoch(LockOnly(lock(None))) == (DEFAULT_EPOCH, "default")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000")
    assert epoch(LockOnly(lock(EPOCH))) == (1000, "SOURCE_DATE_EPOCH")

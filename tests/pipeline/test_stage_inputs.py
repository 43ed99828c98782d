"""What each stage's typed inputs hold, and that a stage cannot read beyond them."""

from __future__ import annotations

from pathlib import Path

import attrs

from imagecomposer.config.model import Config, Core
from imagecomposer.foundation.fingerprint import fingerprint, fingerprint_fields
from imagecomposer.pipeline.inputs import (
    configuration_input,
    finalize_input,
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


def make_spec(tmp_path: Path) -> Spec:
    return Spec(image=Image("web", Base("debian", "12"), "1.2.3"),
                customizations=Customizations(hostname="web"),
                output=Output(formats=("qcow2",), compression="zstd", sbom=("cyclonedx",)),
                build=Build(cache=BuildCache(use_image_cache=False), stages=("validate",)),
                variables=(("who", "me"),), base_dir=tmp_path)


def test_the_configuration_stage_composes_from_its_own_sections_only(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    config = Config(core=Core(allowed_paths=(tmp_path / "shared",)))
    value = configuration_input(spec, config, "ab" * 32, {"compose": "cd" * 32})
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
    assert fingerprint(configuration_input(other, config, "ab" * 32, {"compose": "cd" * 32})) \
        == fingerprint(value)


def test_finalize_and_validate_hold_the_whole_spec_sign_its_section(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    assert finalize_input(spec, "ab", {}).spec == spec
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

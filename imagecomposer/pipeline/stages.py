"""The default stages of an image build, each a thin wrapper around one library object.

validate → packages → compose → configuration → sign → finalize. Each stage builds its
typed inputs (:mod:`imagecomposer.pipeline.inputs`) and runs on them alone; the engine
reruns it only when their fingerprint changed.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

import cattrs

from imagecomposer.compose.composer import ComposeResult
from imagecomposer.export import Exporter
from imagecomposer.export.finalize import finalize
from imagecomposer.export.manifest import layout_data
from imagecomposer.export.provenance import builder_id
from imagecomposer.export.sbom import ImageInfo, SbomPackage, collect, embed_sboms, sbom_documents
from imagecomposer.families import validate
from imagecomposer.foundation.cleanup import remove_tree
from imagecomposer.foundation.events import ConfigurationStep
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.foundation.units import human_size
from imagecomposer.pipeline.context import BuildContext
from imagecomposer.pipeline.inputs import (
    ComposeInput,
    ConfigurationInput,
    FinalizeInput,
    PackagesInput,
    SignInput,
    ValidateInput,
    compose_input,
    configuration_input,
    finalize_input,
    packages_input,
    provenance_configuration,
    sign_input,
    validate_input,
)
from imagecomposer.pipeline.packages import run_packages_stage
from imagecomposer.sign import Signer

log = logging.getLogger("imagecomposer.pipeline")


class ValidateStage:
    name = "validate"
    consumes: tuple[str, ...] = ()

    def inputs(self, ctx: BuildContext, upstream: Mapping[str, str]) -> ValidateInput:
        return validate_input(ctx.spec, ctx.config)

    def outputs_present(self, ctx: BuildContext) -> bool:
        return True

    def run(self, ctx: BuildContext, inputs: ValidateInput) -> None:
        log.debug("validating %s (%s) against the schema and the configured providers",
                  inputs.spec.path or inputs.spec.image.name, inputs.spec.image.base)
        validate(inputs.spec, inputs.config())


class PackagesStage:
    name = "packages"
    consumes: tuple[str, ...] = ()

    def inputs(self, ctx: BuildContext, upstream: Mapping[str, str]) -> PackagesInput:
        return packages_input(ctx.spec, ctx.config, ctx.locked_path())

    def outputs_present(self, ctx: BuildContext) -> bool:
        return ctx.lock_path.exists()

    def run(self, ctx: BuildContext, inputs: PackagesInput) -> None:
        if inputs.locked is not None:
            ctx.lock_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(inputs.locked, ctx.lock_path)
            log.info("installing exactly the lock %s", inputs.locked)
        result = run_packages_stage(
            inputs.request, inputs.config(ctx.config), lock_path=ctx.lock_path,
            locked=inputs.locked is not None, parallel=ctx.parallel,
            use_package_cache=ctx.use_package_cache, events=ctx.emit)
        ctx.adopt_packages(result.lock, result.packages, result.cache)
        # The lock next to the outputs too: `build --locked` reads it from there.
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        result.lock.write(ctx.output_dir / f"{ctx.name}.lock.json")
        log.debug("lock %s (%d packages) written to %s and %s", result.lock.hash[:12],
                  len(result.lock.packages), ctx.lock_path,
                  ctx.output_dir / f"{ctx.name}.lock.json")


class ComposeStage:
    """Installs the locked packages into ``compose/root`` (restored from the installed-tree
    cache when an earlier build installed the same lock), the spec's pre_install scripts
    run between the family's bootstrap set and the rest."""

    name = "compose"
    consumes: tuple[str, ...] = ()

    def inputs(self, ctx: BuildContext, upstream: Mapping[str, str]) -> ComposeInput:
        return compose_input(ctx.lock().hash, epoch=ctx.epoch()[0], spec=ctx.spec)

    def outputs_present(self, ctx: BuildContext) -> bool:
        return (ctx.installed_tree / "var/lib").is_dir()

    def run(self, ctx: BuildContext, inputs: ComposeInput) -> None:
        lock = ctx.lock()
        packages = ctx.fetch_packages(lock)
        work = ctx.installed_tree.parent
        log.debug("installing lock %s (%d %s packages) into %s", lock.hash[:12],
                  len(lock.packages), lock.kind, ctx.installed_tree)
        if work.exists():
            remove_tree(work)
        # installed_tree() leaves the tree in work/"root", which is ctx.installed_tree
        ctx.composer(epoch=inputs.epoch).installed_tree(lock, packages, work,
                                                      use_cache=not ctx.options.no_cache,
                                                      pre_install=inputs.pre_install,
                                                      read_only=True)  # configured: a copy


class ConfigurationStage:
    """Configures a copy of the installed tree and assembles the raw disk image."""

    name = "configuration"
    consumes: tuple[str, ...] = ("compose",)

    def inputs(self, ctx: BuildContext, upstream: Mapping[str, str]) -> ConfigurationInput:
        return configuration_input(ctx.spec, ctx.config, ctx.lock().hash, upstream,
                                   epoch=ctx.epoch()[0])

    def outputs_present(self, ctx: BuildContext) -> bool:
        return ctx.raw_path.exists() and ctx.layout_path.exists()

    def run(self, ctx: BuildContext, inputs: ConfigurationInput) -> None:
        spec = inputs.spec()  # exactly the hashed sections: nothing else can be read
        lock = ctx.lock()
        ctx.raw_path.parent.mkdir(parents=True, exist_ok=True)

        def describe(root: Path) -> None:
            # The tree exists only now: take what the SBOMs need from it, embed a copy.
            packages = collect(lock, root)
            atomic_write(ctx.sbom_packages_path,
                         json.dumps(cattrs.unstructure(packages), sort_keys=True))
            if spec.output.sbom:
                ctx.emit(ConfigurationStep("SBOMs embedded in /usr/share/sbom"))
                image = ImageInfo(spec.image.name, spec.image.version)
                embed_sboms(root, spec.image.name,
                            sbom_documents(image, packages, lock.hash, spec.output.sbom,
                                           epoch=inputs.epoch))

        # The installed tree is compose's output: no package file is read again here.
        result = ctx.composer(inputs.config(ctx.config), epoch=inputs.epoch).compose(
            spec, lock, {}, ctx.workspace.root / "tmp-configuration", ctx.raw_path,
            installed=ctx.installed_tree, on_configured=describe)
        atomic_write(ctx.layout_path, json.dumps(layout_data(result.layout), indent=1,
                                                 sort_keys=True))
        log.info("configuration: disk %s (%s)", ctx.raw_path.name, _layout_summary(result))


class SignStage:
    """Signs the raw disk image (finalize signs every published artifact too)."""

    name = "sign"
    consumes: tuple[str, ...] = ("configuration",)

    def inputs(self, ctx: BuildContext, upstream: Mapping[str, str]) -> SignInput:
        return sign_input(ctx.spec, upstream)

    def outputs_present(self, ctx: BuildContext) -> bool:
        return ctx.spec.output.sign is None or _sig(ctx.raw_path).exists()

    def run(self, ctx: BuildContext, inputs: SignInput) -> None:
        if inputs.sign is None:
            log.debug("sign: the spec asks for no signature (output.sign)")
            return
        signature = Signer.from_spec(inputs.sign).sign_file(ctx.raw_path)
        log.info("sign: %s signed (%s)", ctx.raw_path.name, signature.name)


class FinalizeStage:
    """Converts, compresses, writes SBOMs and the manifest, publishes atomically
    (:func:`imagecomposer.export.finalize.finalize`)."""

    name = "finalize"
    consumes: tuple[str, ...] = ("configuration", "sign")

    def inputs(self, ctx: BuildContext, upstream: Mapping[str, str]) -> FinalizeInput:
        return finalize_input(ctx.spec, ctx.lock().hash, upstream, epoch=ctx.epoch(),
                              config=ctx.config)

    def outputs_present(self, ctx: BuildContext) -> bool:
        return (ctx.output_dir / "SHA256SUMS").exists()

    def run(self, ctx: BuildContext, inputs: FinalizeInput) -> None:
        spec = inputs.spec
        packages = None
        if spec.output.sbom:
            packages = cattrs.structure(json.loads(ctx.sbom_packages_path.read_text()),
                                        tuple[SbomPackage, ...])
        signer = Signer.from_spec(spec.output.sign) if spec.output.sign is not None else None
        result = finalize(
            ctx.raw_path, spec, ctx.output_dir, lock=ctx.lock(), packages=packages,
            lock_file=ctx.lock_path, layout=json.loads(ctx.layout_path.read_text()),
            signer=signer, configuration=provenance_configuration(inputs.provider),
            builder=builder_id(ctx.options.worker),
            work_dir=ctx.workspace.root, epoch_source=inputs.epoch_source,
            exporter=Exporter(parallel=ctx.parallel, events=ctx.emit, epoch=inputs.epoch,
                              content_digests=ctx.use_image_cache))
        images = [a for a in result.artifacts if not a.format.startswith(("sbom", "extra"))]
        others = len(result.artifacts) - len(images) + (result.manifest is not None) + 1
        log.info("finalize: %s and %d more files (SBOMs, lock, manifest, SHA256SUMS)",
                 ", ".join(f"{a.name} ({human_size(a.size)})" for a in images), others)


def _layout_summary(result: ComposeResult) -> str:
    """``gpt, 2.0 GiB: esp vfat 512.0 MiB, root ext4 1.5 GiB``."""
    layout = result.layout
    parts = ", ".join(f"{p.name} {p.filesystem} {human_size(p.size)}"
                      for p in layout.partitions)
    return f"{layout.table}, {human_size(layout.size)}: {parts}"


def _sig(path: Path) -> Path:
    return path.with_name(path.name + ".sig")


DEFAULT_STAGES = (ValidateStage(), PackagesStage(), ComposeStage(), ConfigurationStage(),
                  SignStage(), FinalizeStage())

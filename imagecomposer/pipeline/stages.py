"""The default stages of an image build, each a thin wrapper around one library object.

validate → packages → compose → configuration → sign → finalize. Each stage names the
inputs its result depends on; the engine reruns it only when one of them changed.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

import cattrs

from imagecomposer import __version__
from imagecomposer.compose.disk.luks import key_fingerprint
from imagecomposer.export import Exporter
from imagecomposer.export.manifest import build_manifest, layout_data
from imagecomposer.export.sbom import (
    ImageInfo,
    SbomPackage,
    collect,
    cyclonedx_document,
    embed_sboms,
    spdx_document,
    write_sboms,
)
from imagecomposer.foundation.cleanup import remove_tree
from imagecomposer.foundation.digest import hash_input, sha256_file
from imagecomposer.foundation.fsutil import atomic_write
from imagecomposer.pipeline.context import BuildContext, digest
from imagecomposer.pipeline.packages import run_packages_stage
from imagecomposer.sign import Signer
from imagecomposer.spec import inputs_digest, validate
from imagecomposer.spec.model import disk_features

log = logging.getLogger("imagecomposer.pipeline")


def _files_digest(paths: tuple[Path, ...]) -> str:
    return digest([(str(p), hash_input(p)) for p in paths])


class ValidateStage:
    name = "validate"
    consumes: tuple[str, ...] = ()

    def inputs(self, ctx: BuildContext) -> Mapping[str, str]:

        return {"spec": inputs_digest(ctx.spec),
                "providers": digest(cattrs.unstructure(ctx.config.providers))}

    def outputs_present(self, ctx: BuildContext) -> bool:
        return True

    def run(self, ctx: BuildContext) -> None:

        validate(ctx.spec, ctx.config)


class PackagesStage:
    name = "packages"
    consumes: tuple[str, ...] = ()

    def inputs(self, ctx: BuildContext) -> Mapping[str, str]:
        spec = ctx.spec
        inputs = {
            "request": digest(cattrs.unstructure(spec.image.base),
                              cattrs.unstructure(spec.customizations.packages),
                              spec.customizations.kernel.package,
                              spec.customizations.bootloader,
                              spec.customizations.security.selinux),
            "repositories": digest(cattrs.unstructure(spec.repositories),
                                   _files_digest(tuple(r.key for r in spec.repositories
                                                       if r.key is not None))),
            "providers": digest(cattrs.unstructure(ctx.config.providers)),
        }
        if ctx.options.locked is not None:
            inputs["locked"] = hash_input(ctx.options.locked)
        features = disk_features(spec.disk)
        if features:  # lvm2 / cryptsetup join the request (only then: no change otherwise)
            inputs["layout packages"] = digest(list(features))
        return inputs

    def outputs_present(self, ctx: BuildContext) -> bool:
        return ctx.lock_path.exists()

    def run(self, ctx: BuildContext) -> None:

        locked = ctx.options.locked
        if locked is not None:
            ctx.lock_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(locked, ctx.lock_path)
            log.info("installing exactly the lock %s", locked)
        result = run_packages_stage(
            ctx.spec, ctx.config, lock_path=ctx.lock_path, locked=locked is not None,
            parallel=ctx.parallel, use_package_cache=ctx.use_package_cache,
            events=ctx.package_events)
        ctx.adopt_packages(result.lock, result.packages, result.cache)
        # The lock next to the outputs too: `build --locked` reads it from there.
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        result.lock.write(ctx.output_dir / f"{ctx.name}.lock.json")


class ComposeStage:
    """Installs the locked packages into ``compose/root`` (restored from the installed-tree
    cache when an earlier build installed the same lock)."""

    name = "compose"
    consumes: tuple[str, ...] = ()

    def inputs(self, ctx: BuildContext) -> Mapping[str, str]:
        return {"lock": ctx.lock().hash}

    def outputs_present(self, ctx: BuildContext) -> bool:
        return (ctx.installed_tree / "var/lib").is_dir()

    def run(self, ctx: BuildContext) -> None:

        lock = ctx.lock()
        packages = ctx.fetch_packages(lock)
        work = ctx.installed_tree.parent
        if work.exists():
            remove_tree(work)
        # installed_tree() leaves the tree in work/"root", which is ctx.installed_tree
        ctx.composer().installed_tree(lock, packages, work, use_cache=not ctx.options.no_cache)


class ConfigurationStage:
    """Configures a copy of the installed tree and assembles the raw disk image."""

    name = "configuration"
    consumes: tuple[str, ...] = ("compose",)

    def inputs(self, ctx: BuildContext) -> Mapping[str, str]:
        spec = ctx.spec
        return {
            "lock": ctx.lock().hash,
            "image": digest(cattrs.unstructure(spec.image)),
            "customizations": digest(cattrs.unstructure(spec.customizations)),
            "disk": digest(cattrs.unstructure(spec.disk)),
            "files": _files_digest(spec.referenced_files()),
            "sbom": digest(list(spec.output.sbom)),
            **({"keys": keys} if (keys := key_fingerprint(spec.disk)) else {}),
        }

    def outputs_present(self, ctx: BuildContext) -> bool:
        return ctx.raw_path.exists() and ctx.layout_path.exists()

    def run(self, ctx: BuildContext) -> None:

        lock = ctx.lock()
        out_dir = ctx.raw_path.parent
        out_dir.mkdir(parents=True, exist_ok=True)

        def describe(root: Path) -> None:
            # The tree exists only now: take what the SBOMs need from it, embed a copy.
            sbom_packages = collect(lock, root)
            atomic_write(ctx.sbom_packages_path,
                         json.dumps(cattrs.unstructure(sbom_packages), sort_keys=True))
            if ctx.spec.output.sbom:

                image = ImageInfo(ctx.name, ctx.spec.image.version)
                embed_sboms(root, ctx.name,
                            _sbom_documents(ctx, sbom_packages, lock.hash, image))

        # The installed tree is compose's output: no package file is read again here.
        result = ctx.composer().compose(
            ctx.spec, lock, {}, ctx.workspace.root / "tmp-configuration", ctx.raw_path,
            installed=ctx.installed_tree, on_configured=describe)

        atomic_write(ctx.layout_path, json.dumps(layout_data(result.layout), indent=1,
                                                 sort_keys=True))


class SignStage:
    """Signs the raw disk image (finalize signs every published artifact too)."""

    name = "sign"
    consumes: tuple[str, ...] = ("configuration",)

    def inputs(self, ctx: BuildContext) -> Mapping[str, str]:
        sign = ctx.spec.output.sign
        if sign is None:
            return {"sign": "none"}
        keys = tuple(p for p in (sign.key, sign.cert) if p is not None)
        return {"sign": digest(cattrs.unstructure(sign)), "keys": _files_digest(keys)}

    def outputs_present(self, ctx: BuildContext) -> bool:
        return ctx.spec.output.sign is None or _sig(ctx.raw_path).exists()

    def run(self, ctx: BuildContext) -> None:
        sign = ctx.spec.output.sign
        if sign is None:
            log.info("sign: the spec asks for no signature (output.sign)")
            return

        Signer.from_spec(sign).sign_file(ctx.raw_path)


class FinalizeStage:
    """Converts, compresses, writes SBOMs and the manifest, publishes atomically."""

    name = "finalize"
    consumes: tuple[str, ...] = ("configuration", "sign")

    def inputs(self, ctx: BuildContext) -> Mapping[str, str]:
        return {"output": digest(cattrs.unstructure(ctx.spec.output), str(ctx.output_dir),
                                 __version__)}

    def outputs_present(self, ctx: BuildContext) -> bool:
        return (ctx.output_dir / "SHA256SUMS").exists()

    def run(self, ctx: BuildContext) -> None:

        spec, lock = ctx.spec, ctx.lock()
        scratch = ctx.workspace.root / "tmp-finalize"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        lock_copy = scratch / f"{ctx.name}.lock.json"
        shutil.copyfile(ctx.lock_path, lock_copy)
        extra = [lock_copy]
        if spec.output.sbom:
            packages = cattrs.structure(json.loads(ctx.sbom_packages_path.read_text()),
                                        tuple[SbomPackage, ...])
            image = ImageInfo(ctx.name, spec.image.version, sha256_file(ctx.raw_path),
                              f"{ctx.name}.raw")
            extra += write_sboms(scratch, ctx.name,
                                 _sbom_documents(ctx, packages, lock.hash, image))
        signer = None
        if spec.output.sign is not None:

            signer = Signer.from_spec(spec.output.sign)
        layout = json.loads(ctx.layout_path.read_text())

        def manifest(artifacts: object, directory: Path) -> dict[str, object]:
            doc = build_manifest(
                spec_data=spec.to_data(), artifacts=artifacts,  # type: ignore[arg-type]
                image_name=ctx.name, image_version=spec.image.version,
                arch=spec.image.base.arch, base_os=cattrs.unstructure(spec.image.base),
                lock_hash=lock.hash, stage_timings=ctx.stage_seconds, output_dir=directory,
                spec_hash=spec.digest())
            doc["layout"] = layout
            return doc

        try:
            Exporter(parallel=ctx.parallel).export(
                ctx.raw_path, spec.output.formats, spec.output.compression, ctx.output_dir,
                extra_files=extra, name=ctx.name, signer=signer, manifest=manifest)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _sbom_documents(ctx: BuildContext, packages: object, lock_hash: str,
                    image: object) -> dict[str, dict[str, object]]:

    makers = {"spdx": spdx_document, "cyclonedx": cyclonedx_document}
    return {fmt: makers[fmt](image, packages, lock_hash)  # type: ignore[arg-type]
            for fmt in ctx.spec.output.sbom}


def _sig(path: Path) -> Path:
    return path.with_name(path.name + ".sig")


DEFAULT_STAGES = (ValidateStage(), PackagesStage(), ComposeStage(), ConfigurationStage(),
                  SignStage(), FinalizeStage())

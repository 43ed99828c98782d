"""Subcommand handlers: each turns parsed arguments into one library call and prints.

Nothing here does work of its own; the objects it calls are the public API.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence

from imagecomposer import __version__
from imagecomposer.boot import SshCommand, boot
from imagecomposer.cache import Caches
from imagecomposer.cli import inspect_cmds, logsetup
from imagecomposer.config import (
    apply_overrides,
    default_config_text,
    load_config,
    render_config,
    spec_overrides,
)
from imagecomposer.config.loader import LoadedConfig
from imagecomposer.export import Exporter
from imagecomposer.export.sbom import sbom_command
from imagecomposer.export.verify import verify_outputs
from imagecomposer.families import validate_file
from imagecomposer.foundation import userns
from imagecomposer.foundation.console import Console
from imagecomposer.foundation.errors import NotReproducible, UsageError, ValidationError
from imagecomposer.foundation.settings import SBOM_FORMATS
from imagecomposer.inspect.outputs import OutputsReport
from imagecomposer.pipeline.build import ImagePipeline
from imagecomposer.pipeline.context import BuildOptions
from imagecomposer.pipeline.many import build_many
from imagecomposer.resolver.resolver import Resolver
from imagecomposer.sign import Signer
from imagecomposer.spec import Spec, schema_text

log = logging.getLogger("imagecomposer")


def _variables(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--set takes NAME=VALUE, got '{pair}'")
        out[name] = value
    return out


def _config(args: argparse.Namespace, overrides: Mapping[str, object] | None = None
            ) -> LoadedConfig:

    loaded = load_config(args.config, overrides=overrides)
    if args.log_level is None:

        logsetup.configure(loaded.config.logging.level,
                           args.log_file or loaded.config.logging.file, args.log_format)
    return loaded


def cmd_version(args: argparse.Namespace) -> int:
    print(f"imagecomposer {__version__}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:

    print(inspect_cmds.schema_for(args) or schema_text(), end="" if args.inspect or
          args.compare else "\n")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:

    config = _config(args).config
    failed = 0
    for path in args.specs:
        try:
            validate_file(path, config, variables=_variables(args.set))
        except ValidationError as exc:
            failed += 1
            log.error("%s", exc)
        else:
            print(f"{path}: valid")
    return 1 if failed else 0


def cmd_config(args: argparse.Namespace) -> int:

    if args.config_command == "init":
        if args.path.exists() and not args.force:
            raise UsageError(f"{args.path} exists (use --force to overwrite)")
        args.path.write_text(default_config_text())
        print(f"wrote {args.path}")
        return 0
    print(render_config(_config(args)), end="")
    return 0


def _cli_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if args.parallel is not None:
        overrides["core.parallel"] = args.parallel
    if args.no_cache or args.no_package_cache:
        overrides["storage.package_cache.enabled"] = False
    if args.no_cache or args.no_image_cache:
        overrides["storage.image_cache.enabled"] = False
    return overrides


def _build_options(args: argparse.Namespace) -> BuildOptions:
    return BuildOptions(
        until=args.stage, skip=tuple(args.skip_stage), no_cache=args.no_cache,
        no_package_cache=args.no_package_cache, no_image_cache=args.no_image_cache,
        timeout=args.timeout,
        parallel=args.parallel, keep_temp=args.keep_temp, locked=args.locked or None,
        output_dir=args.output, wait=args.wait, check_reproducible=args.check_reproducible)


def cmd_build(args: argparse.Namespace) -> int:
    if len(args.specs) > 1:
        return _build_many(args)

    loaded = _config(args)
    spec = Spec.load(args.specs[0], variables=_variables(args.set),
                     allowed_paths=loaded.config.core.allowed_paths)
    cli = _cli_overrides(args)
    cache = spec.build.cache
    loaded = apply_overrides(loaded, spec_overrides(cache.use_package_cache,
                                                    cache.use_image_cache), "spec")
    if cli:
        loaded = apply_overrides(loaded, cli, "command line")
    events = logsetup.json_events()
    try:
        report = ImagePipeline(loaded.config, events=events,
                               progress_bar=False if events is not None else None
                               ).build(spec, _build_options(args))
    except NotReproducible as exc:  # the report on stdout, one ERROR line
        print(exc.report.text() if isinstance(exc.report, OutputsReport) else exc,
              end="")
        log.error("%s", exc.headline)
        return exc.exit_code
    print(report.table())
    print(report.where())
    if report.reproducibility is not None:
        print(report.reproducibility.summary())
    return 0


def _build_many(args: argparse.Namespace) -> int:
    """``build a.yml b.yml``: :func:`imagecomposer.build_many`, one process per spec,
    ``core.max_concurrent_builds`` at once; the exit code is the worst of them."""
    if args.output is not None:
        raise UsageError("-o/--output names one directory: give each spec its own "
                         "output.directory to build several at once")
    loaded = _config(args)
    cli = _cli_overrides(args)
    if cli:
        loaded = apply_overrides(loaded, cli, "command line")
    results = build_many(args.specs, config=loaded.config, options=_build_options(args),
                         variables=_variables(args.set), events=logsetup.json_events())
    for result in results:
        if result.report is not None:
            print(f"{result.spec}:")
            print(textwrap.indent(result.report.table(), "  "))
            print(f"  {result.report.where()}")
        else:
            log.error("%s: %s", result.spec, result.error)
    for result in results:
        log.info("%s: %s", result.spec, "ok" if result.ok
                 else f"failed (exit code {result.exit_code})")
    return max(r.exit_code for r in results)


def cmd_resolve(args: argparse.Namespace) -> int:

    config = _config(args).config
    spec = Spec.load(args.spec, variables=_variables(args.set),
                     allowed_paths=config.core.allowed_paths)
    resolution = Resolver(config).resolve(spec)
    if args.lock is not None:  # first: a reader that stops early (| head) must not lose it
        resolution.lock.write(args.lock)
    if args.explain:
        print(resolution.explain(args.explain))
    else:
        print(resolution)
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    caches = Caches(_config(args).config)
    if args.cache_command != "list":  # rootless builds' trees hold subordinate ids
        userns.become_root_if_set_up()
    only = args.caches or None
    entries = args.verbose or only is not None
    if args.cache_command == "list":
        print(caches.list(only).table(entries=entries))
    elif args.cache_command == "prune":
        print(caches.prune(args.dry_run, only).table(entries=entries))
    else:
        print(caches.clean(args.dry_run, only).table(entries=entries))
    return 0


def cmd_export(args: argparse.Namespace) -> int:

    output = args.output or args.image.parent
    events = logsetup.json_events() or Console()  # progress of conversions and hashing
    result = Exporter(events=events).export(args.image, args.formats or ["qcow2"], args.compression,
                               output, name=args.image.name.removesuffix(".raw"))
    for artifact in result.artifacts:
        print(f"{result.path(artifact)}  {artifact.size}  sha256:{artifact.sha256}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:

    signer = Signer.from_key_file(args.key, cert=args.cert,
                                  passphrase_file=args.passphrase_file,
                                  passphrase_env=args.passphrase_env)
    for path in args.files:
        print(signer.sign_file(path))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:

    provenance = verify_outputs(args.directory, args.key)
    if args.key is None:
        print(f"{args.directory}: SHA256SUMS and manifest verified; signatures and "
              "provenance were not checked (give --key to check them)")
    else:
        checked = f", provenance {', '.join(p.name for p in provenance)}" if provenance else ""
        print(f"{args.directory}: signatures, SHA256SUMS and manifest verified{checked}")
    return 0


def cmd_sbom(args: argparse.Namespace) -> int:

    for path in sbom_command(args.lock, args.tree, args.output, name=args.name,
                             version=args.image_version, image=args.image,
                             formats=args.formats or SBOM_FORMATS):
        print(path)
    return 0


def cmd_boot(args: argparse.Namespace) -> int:

    if args.secure_boot and args.sb_cert is None:
        raise UsageError("--secure-boot needs --sb-cert (the db certificate to enroll)")
    ssh = (SshCommand(args.ssh, user=args.ssh_user, key=args.ssh_key, wait=args.ssh_wait)
           if args.ssh is not None else None)
    if ssh is None and args.ssh_key is not None:
        raise UsageError("--ssh-key needs --ssh COMMAND")
    result = boot(args.image, timeout=args.timeout, secure_boot=args.secure_boot,
                  secure_boot_cert=args.sb_cert, firmware="bios" if args.bios else "uefi",
                  console_log=args.console_log, ssh=ssh)
    print(result.summary, file=sys.stderr if result.ssh is not None else sys.stdout)
    if result.ssh is None:
        return 0
    sys.stdout.write(result.ssh.output)
    sys.stdout.flush()
    if result.ssh.returncode != 0:
        log.error("the command exited with %d in the image: %s%s", result.ssh.returncode,
                  args.ssh, "\n" + result.ssh.errors if result.ssh.errors else "")
        return 1
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "version": cmd_version, "schema": cmd_schema, "validate": cmd_validate,
    "config": cmd_config, "build": cmd_build, "resolve": cmd_resolve, "cache": cmd_cache,
    "export": cmd_export, "sign": cmd_sign, "verify": cmd_verify, "sbom": cmd_sbom,
    "boot": cmd_boot, **inspect_cmds.HANDLERS,
}


def dispatch(args: argparse.Namespace) -> int:
    return HANDLERS[args.command](args)

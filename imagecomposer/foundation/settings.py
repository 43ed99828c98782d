"""One settings registry: every enumerated setting, declared once.

Each enumeration is a ``Literal`` type; its tuple of values is derived from it with
:func:`typing.get_args`, so the two cannot differ. Everything else takes them from here:

* the typed models (:mod:`imagecomposer.spec.model`, :mod:`imagecomposer.config.model`,
  :mod:`imagecomposer.lock`) annotate fields with the ``Literal`` types;
* the command line (:mod:`imagecomposer.cli`) uses the tuples as argparse ``choices``;
* the JSON Schemas (``spec/schema.json``, ``config/schema.json``) carry no value lists of
  their own: where a setting is enumerated they say ``"x-enum": "<name>"`` (a key of
  :data:`ENUMS`), and :func:`fill_enums` turns that into ``"enum": [...]`` when the schema is
  loaded (:func:`imagecomposer.foundation.yamldoc.schemacheck.load_schema`) and when
  ``imagecomposer schema`` prints it.

``tests/test_settings.py`` proves that every enum of both schemas, every CLI choice and every
``Literal`` of the models comes from here (docs/architecture.md, "One settings registry").
Adding a value (a new output format, a third package family) means adding it here, plus
whatever implements it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

# --- the build --------------------------------------------------------------------------

StageName = Literal["validate", "packages", "compose", "configuration", "sign", "finalize"]
STAGES: tuple[StageName, ...] = get_args(StageName)  # in build order

# --- the base OS ------------------------------------------------------------------------

BaseType = Literal["minimal", "server", "development"]
BASE_TYPES: tuple[BaseType, ...] = get_args(BaseType)

Arch = Literal["x86_64", "aarch64"]
ARCHITECTURES: tuple[Arch, ...] = get_args(Arch)

PackageFamily = Literal["deb", "rpm"]
PACKAGE_FAMILIES: tuple[PackageFamily, ...] = get_args(PackageFamily)

# --- customizations ---------------------------------------------------------------------

Bootloader = Literal["systemd-boot", "grub", "none"]
BOOTLOADERS: tuple[Bootloader, ...] = get_args(Bootloader)

SelinuxMode = Literal["disabled", "permissive", "enforcing"]
SELINUX_MODES: tuple[SelinuxMode, ...] = get_args(SelinuxMode)

# --- the disk ---------------------------------------------------------------------------

PartitionTable = Literal["gpt", "mbr"]
PARTITION_TABLES: tuple[PartitionTable, ...] = get_args(PartitionTable)

# A partition's ``type`` is one of these roles or an explicit GPT type GUID.
PartitionRole = Literal["esp", "root", "swap", "home", "var", "srv", "tmp", "xbootldr",
                        "verity", "lvm", "generic"]
PARTITION_TYPES: tuple[PartitionRole, ...] = get_args(PartitionRole)

# What a logical volume may carry; a partition may also carry nothing ("none").
VolumeFilesystem = Literal["ext4", "xfs", "vfat", "swap", "squashfs", "erofs"]
VOLUME_FILESYSTEMS: tuple[VolumeFilesystem, ...] = get_args(VolumeFilesystem)
Filesystem = Literal[VolumeFilesystem, "none"]
FILESYSTEMS: tuple[Filesystem, ...] = get_args(Filesystem)

EncryptionType = Literal["luks2"]
ENCRYPTION_TYPES: tuple[EncryptionType, ...] = get_args(EncryptionType)

# --- outputs ----------------------------------------------------------------------------

Format = Literal["raw", "qcow2", "vhd", "vhd-fixed", "vhdx", "vmdk", "vmdk-stream", "vdi"]
FORMATS: tuple[Format, ...] = get_args(Format)

Compression = Literal["none", "gzip", "xz", "zstd"]
COMPRESSIONS: tuple[Compression, ...] = get_args(Compression)

SbomFormat = Literal["spdx", "cyclonedx"]
SBOM_FORMATS: tuple[SbomFormat, ...] = get_args(SbomFormat)

# The signature algorithm a spec (or ``imagecomposer sign``) asks for; "auto" follows the key.
SignAlgorithm = Literal["auto", "rsa-pss", "rsa-pkcs1v15"]
SIGN_ALGORITHMS: tuple[SignAlgorithm, ...] = get_args(SignAlgorithm)

# --- the tool itself --------------------------------------------------------------------

LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)

# How the console log is written (``--log-format``): lines for people, JSON for CI.
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)

# How ``inspect`` and ``compare`` print their report.
ReportFormat = Literal["text", "json", "yaml"]
REPORT_FORMATS: tuple[ReportFormat, ...] = get_args(ReportFormat)

# How deep ``compare`` looks.
CompareMode = Literal["summary", "packages", "files", "full"]
COMPARE_MODES: tuple[CompareMode, ...] = get_args(CompareMode)

# The caches under ``core.cache_dir`` (``imagecomposer cache --cache NAME``).
CacheName = Literal["packages", "metadata", "trees", "initramfs", "images"]
CACHE_NAMES: tuple[CacheName, ...] = get_args(CacheName)

# The schemas' ``"x-enum"`` names -> values.
ENUMS: Mapping[str, tuple[str, ...]] = {
    "stages": STAGES,
    "base_types": BASE_TYPES,
    "architectures": ARCHITECTURES,
    "package_families": PACKAGE_FAMILIES,
    "bootloaders": BOOTLOADERS,
    "selinux_modes": SELINUX_MODES,
    "partition_tables": PARTITION_TABLES,
    "partition_types": PARTITION_TYPES,
    "volume_filesystems": VOLUME_FILESYSTEMS,
    "filesystems": FILESYSTEMS,
    "encryption_types": ENCRYPTION_TYPES,
    "formats": FORMATS,
    "compressions": COMPRESSIONS,
    "sbom_formats": SBOM_FORMATS,
    "sign_algorithms": SIGN_ALGORITHMS,
    "log_levels": LOG_LEVELS,
    "log_formats": LOG_FORMATS,
    "report_formats": REPORT_FORMATS,
    "compare_modes": COMPARE_MODES,
    "cache_names": CACHE_NAMES,
}

ENUM_KEY = "x-enum"


def fill_enums(node: Any) -> Any:
    """A copy of the JSON Schema ``node`` with every ``"x-enum": name`` replaced by
    ``"enum": [the registry's values]``. An unknown name raises KeyError: a schema naming
    a setting the registry lacks is a bug, found by the first load."""
    if isinstance(node, list):
        return [fill_enums(item) for item in node]
    if not isinstance(node, dict):
        return node
    filled: dict[str, Any] = {}
    for key, value in node.items():
        if key == ENUM_KEY:
            filled["enum"] = list(ENUMS[value])
        else:
            filled[key] = fill_enums(value)
    return filled

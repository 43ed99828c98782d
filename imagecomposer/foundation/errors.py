"""The one exception hierarchy of imagecomposer.

Every error a user can meet is a subclass of :class:`ImageComposerError`. Class names are
precise and greppable; messages use the phrases the documentation tells users to search
build logs for ("Validation error", "Failed to resolve dependencies", "Package not found",
"Insufficient disk space", "Script returned non-zero exit code", "Permission denied").

The CLI maps the hierarchy to exit codes: 1 for build and validation failures, 2 for usage
errors, 130 for interruption. A failure is reported once, as :func:`describe` words it: with
the stage it ended (the engine records it with :func:`in_stage`), and an ``OSError`` as one
line naming the path (``Permission denied: /srv/out (Operation not permitted)``), never as a
traceback.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Sequence

import attrs

STAGE_ATTR = "imagecomposer_stage"  # (stage, seconds) the engine records on an exception


class ImageComposerError(Exception):
    """Base class of every error imagecomposer raises on purpose."""

    exit_code = 1


class UsageError(ImageComposerError):
    """The command line or an API call was malformed."""

    exit_code = 2


class BuildInterrupted(ImageComposerError):
    """Ctrl-C, SIGTERM or the build timeout stopped the build; everything was cleaned up."""

    exit_code = 130


class BuildTimeout(BuildInterrupted):
    """The build ran past ``--timeout``."""


class WorkspaceBusy(ImageComposerError):
    """Another build of the same spec holds the workspace lock (``--wait`` queues instead).

    ``pid`` and ``command`` name the holder when they can be read (None otherwise).
    """

    def __init__(self, message: str, workspace: str, pid: int | None = None,
                 command: str | None = None) -> None:
        self.workspace = workspace
        self.pid = pid
        self.command = command
        super().__init__(message)


# --- validation -----------------------------------------------------------------------------


@attrs.frozen
class Problem:
    """One problem found in a spec or config file, with its position."""

    message: str
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    path: str = ""  # field path such as "customizations.users[0].ssh_keys[1]"

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class ValidationError(ImageComposerError):
    """A spec or config is invalid. Holds every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"Validation error: {count} problem{'s' if count != 1 else ''}\n{lines}")


class ConfigError(ImageComposerError):
    """The global configuration is invalid or names something that does not exist."""


class InvalidConfig(ValidationError, ConfigError):
    """A global configuration file (or override) is invalid; holds every problem."""


class ProviderNotConfigured(ConfigError):
    """The spec names an OS no provider is configured for."""


class TemplateError(ValidationError):
    """A template is missing, cyclic, too deep, or does not render (with every problem)."""


# --- host tools -----------------------------------------------------------------------------


class CommandError(ImageComposerError):
    """A host tool failed. ``stderr_tail`` keeps the last lines of its output."""

    def __init__(self, message: str, argv: Sequence[str] = (), returncode: int | None = None,
                 stderr_tail: str = "") -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        text = message
        if stderr_tail:
            text += "\n" + "\n".join("  | " + line for line in stderr_tail.splitlines())
        super().__init__(text)


class ToolNotFound(CommandError):
    """A required host tool is not installed."""


class ScriptFailed(CommandError):
    """A user script or maintainer script returned a non-zero exit code."""


class PermissionDenied(CommandError):
    """The operation needs privileges the process does not have."""


class RootlessUnavailable(PermissionDenied):
    """An unprivileged user cannot become root of a user namespace here (no subordinate ids,
    no newuidmap, user namespaces disabled or restricted); the message says what to
    configure, with the commands."""


class InsufficientDiskSpace(ImageComposerError):
    """The work directory has less free space than the build needs."""


# --- packages -------------------------------------------------------------------------------


class RepositoryError(ImageComposerError):
    """A repository could not be reached or its metadata is unusable."""


class SignatureError(RepositoryError):
    """A signature is missing, invalid, or made by a key that is not trusted."""


class ChecksumMismatch(RepositoryError):
    """A downloaded file does not match the checksum its signed index promises."""


class MetadataExpired(RepositoryError):
    """A Release file is past its Valid-Until date."""


class DownloadError(RepositoryError):
    """A download failed after its retries (404, stall, truncation, connection error)."""


class DownloadCancelled(DownloadError):
    """A download was stopped because another one failed or the build was interrupted."""


class PackageNotFound(ImageComposerError):
    """A requested package exists in no configured repository."""


class DependencyError(ImageComposerError):
    """libsolv found no solution; the message holds its explanation."""


class LockError(ImageComposerError):
    """A lockfile is missing, malformed, or does not match the cache."""


# --- later stages ---------------------------------------------------------------------------


class ComposeError(ImageComposerError):
    """The root tree, the configuration or the disk could not be built."""


class DiskToolError(CommandError, ComposeError):
    """A tool building the disk (sfdisk, mkfs.*, mcopy, veritysetup) failed."""


class UnitNotFound(ComposeError):
    """A service the spec enables or disables has no unit file in the image."""


class ImagePathError(ComposeError):
    """A path inside an image tree could not be resolved, read or written inside the tree
    (:mod:`imagecomposer.foundation.rootfs`). ``errno`` keeps the system error number, if any."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(message)


class SourceNotAllowed(ComposeError):
    """A host file the spec copies into the image is (or resolves to a file) outside the
    directories sources may come from (:func:`imagecomposer.foundation.rootfs.allowed_source`)."""


class BootError(ImageComposerError):
    """A boot test did not reach a login prompt."""


class BootToolError(CommandError, BootError):
    """A tool preparing or running a boot test (virt-fw-vars, apt-get, sbsign) failed."""


class SigningError(ImageComposerError):
    """A key could not be read, or a signature could not be made or verified."""


class ExportError(ImageComposerError):
    """Conversion, compression, manifest or SBOM generation failed."""


class NotReproducible(ImageComposerError):
    """A second build of the same spec and lock (``build --check-reproducible``) wrote other
    bytes. ``headline`` is the one-line error; ``report`` says where the outputs differ
    (an :class:`imagecomposer.inspect.outputs.OutputsReport`), ``str()`` holds both."""

    def __init__(self, headline: str, report: object) -> None:
        self.headline = headline
        self.report = report
        text = getattr(report, "text", None)
        super().__init__(f"{headline}\n{text()}" if callable(text) else headline)


class CacheError(ImageComposerError):
    """A cache is inconsistent, locked or cannot be used."""


class CacheNotWritable(CacheError):
    """A cache directory cannot be created or written (the message names the directory and
    the setting that chooses it)."""


class SealKeyError(CacheError):
    """The key that seals cache entries cannot be read or created, or is unsafe (other users
    could write or read it). The message names the file, never its content."""


# --- inspect and compare --------------------------------------------------------------------


class InspectError(ImageComposerError):
    """An image (or SBOM, or lock) could not be read for inspection or comparison."""


class UnsupportedImage(InspectError):
    """The file is not a disk image format inspect can read (or its container is damaged)."""


class TruncatedImage(InspectError):
    """The image is shorter than its own partition table or container header says."""


class NoPartitionTable(InspectError):
    """The image holds neither a GPT nor an MBR partition table, nor a bare filesystem."""


class CorruptFilesystem(InspectError):
    """A filesystem in the image is recognised but cannot be read."""


class InspectToolError(CommandError, InspectError):
    """A tool reading an image offline (qemu-img, debugfs, mtools, unsquashfs) failed."""


class NotInImage(ComposeError, InspectError):
    """The file asked for is not in the image (or not in the partition named)."""


# --- reporting a failure once ----------------------------------------------------------------

DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def in_stage(exc: BaseException, stage: str, seconds: float) -> None:
    """Record on ``exc`` that it ended build stage ``stage`` after ``seconds`` (the
    innermost stage wins: a record already there is kept)."""
    if getattr(exc, STAGE_ATTR, None) is None:
        with contextlib.suppress(AttributeError, TypeError):
            setattr(exc, STAGE_ATTR, (stage, seconds))


def stage_of(exc: BaseException) -> tuple[str, float] | None:
    """(stage, seconds) recorded by :func:`in_stage`, if any."""
    found = getattr(exc, STAGE_ATTR, None)
    return found if isinstance(found, tuple) else None


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError``: the seed's phrase for a permission problem, the path(s)
    and the system's words: ``Permission denied: /srv/out (Operation not permitted)``."""
    words = exc.strerror or str(exc) or type(exc).__name__
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    if exc.errno in DENIED or isinstance(exc, PermissionError):
        head = "Permission denied"
        detail = f" ({words})" if words != head else ""
    elif exc.errno == errno.ENOSPC:
        head, detail = "Insufficient disk space", f" ({words})"
    else:
        head, detail = words, ""
    return f"{head}: {paths}{detail}" if paths else f"{head}{detail}"


def describe(exc: BaseException) -> str:
    """How a failure is shown to a user, once: ``packages failed after 0.8 s: Package not
    found: ngnix ...`` (the stage when one is recorded); an ``OSError`` as
    :func:`os_error_message`; anything else unexpected with its type."""
    if isinstance(exc, ImageComposerError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = os_error_message(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = stage_of(exc)
    if where is not None:
        return f"{where[0]} failed after {where[1]:.1f} s: {text}"
    return text


class ClusterError(ImageComposerError):
    """A distributed build could not be submitted, run or collected (the broker cannot be
    reached, the cluster extra is not installed, a spec cannot travel, a worker lacks a
    secret): the message says which, and what to do."""

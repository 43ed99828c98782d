"""Trusted keys of an rpm-md repository, prepared once for ``gpgv`` and for ``rpmkeys``.

The configured key files may be armored or binary, one key or several, a file or a
directory of files (as in ``/etc/pki/rpm-gpg``). They become a content-addressed directory
in the metadata cache holding

* ``keyring.gpg``: a binary OpenPGP keyring, the only format ``gpgv --keyring`` reads;
* ``rpmdb/``: a private rpm database into which every key was imported, so that
  ``rpmkeys --dbpath`` checks package signatures against exactly these keys and never
  against the host's rpm database.

The directory is built in a temporary sibling and renamed into place, so an interrupted
preparation never leaves a half-made keyring behind, and concurrent builds share it.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import attrs

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import CommandError, ConfigError


@attrs.frozen
class Keyring:
    directory: Path
    sources: tuple[Path, ...]

    @property
    def gpgv_keyring(self) -> Path:
        return self.directory / "keyring.gpg"

    @property
    def rpmdb(self) -> Path:
        return self.directory / "rpmdb"

    @property
    def armored(self) -> tuple[Path, ...]:
        """One armored file per key (what ``rpm --import`` reads)."""
        return tuple(sorted(self.directory.glob("key-*.asc")))


def key_files(sources: Sequence[Path], *, what: str) -> list[Path]:
    """The regular files behind ``sources`` (directories are expanded, sorted)."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += sorted(p for p in source.iterdir() if p.is_file())
        elif source.is_file():
            files.append(source)
        else:
            raise ConfigError(f"{what}: key file {source} does not exist")
    if not files:
        raise ConfigError(f"{what}: no key files in {', '.join(map(str, sources))}")
    return files


def prepare_keyring(sources: Sequence[Path], cache_root: Path, *, what: str) -> Keyring:
    """The keyring made of ``sources``, from the cache or freshly built."""
    files = key_files(sources, what=what)
    digest = hashlib.sha256()
    for path in files:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    directory = cache_root / digest.hexdigest()[:32]
    keyring = Keyring(directory, tuple(files))
    if (directory / "complete").is_file():
        return keyring
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".keyring-", dir=cache_root))
    try:
        _build(files, staging, what=what)
        (staging / "complete").write_text("\n".join(map(str, files)) + "\n")
        try:
            staging.rename(directory)
        except OSError:
            if not (directory / "complete").is_file():  # not a concurrent builder's result
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return keyring


def _build(files: Sequence[Path], staging: Path, *, what: str) -> None:
    # A short GnuPG home outside the cache (agent socket paths are limited to ~100 bytes);
    # importing and exporting public keys never needs the agent: --no-autostart.
    home = Path(tempfile.mkdtemp(prefix="ic-gpg-"))
    try:
        _build_in(files, staging, home, what=what)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _build_in(files: Sequence[Path], staging: Path, home: Path, *, what: str) -> None:
    gpg = [runner.require("gpg", "gnupg"), "--homedir", str(home), "--batch", "--no-tty",
           "--quiet", "--no-autostart"]
    for path in files:
        try:
            runner.run([*gpg, "--import", str(path)], capture=True)
        except CommandError as exc:
            raise ConfigError(f"{what}: {path} is not an OpenPGP public key\n"
                              f"{exc.stderr_tail}") from exc
    listing = runner.run([*gpg, "--with-colons", "--list-keys"], capture=True).stdout.decode()
    fingerprints = []
    expect_fpr = False
    for line in listing.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            expect_fpr = True
        elif fields[0] == "fpr" and expect_fpr:
            fingerprints.append(fields[9])
            expect_fpr = False
    if not fingerprints:
        raise ConfigError(f"{what}: no public keys in {', '.join(map(str, files))}")
    keyring = runner.run([*gpg, "--export", *fingerprints], capture=True).stdout
    (staging / "keyring.gpg").write_bytes(keyring)
    rpmkeys = runner.require("rpmkeys", "rpm")
    rpmdb = staging / "rpmdb"
    rpmdb.mkdir()
    for fingerprint in fingerprints:
        armored = staging / f"key-{fingerprint}.asc"
        armored.write_bytes(
            runner.run([*gpg, "--armor", "--export", fingerprint], capture=True).stdout)
        runner.run([rpmkeys, "--dbpath", str(rpmdb), "--import", str(armored)],
                   what=f"importing key {fingerprint} into a private rpm database")
    with contextlib.suppress(OSError):
        staging.chmod(0o755)

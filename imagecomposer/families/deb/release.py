"""Release files of apt repositories: signature verification with gpgv, then parsing.

The signature is checked with ``gpgv`` against the configured keyring *only* (an empty
``GNUPGHOME`` so no default trusted keyring sneaks in). For an ``InRelease`` file the text
that is parsed is the one gpgv writes out after verifying, never the raw file, so content
outside the signed part cannot be smuggled in. A signature by a key that is not in the
keyring is a failure, like a bad signature.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import logging
import tempfile
from pathlib import Path

import attrs

from imagecomposer.foundation import runner
from imagecomposer.foundation.errors import (
    CommandError,
    ConfigError,
    MetadataExpired,
    SignatureError,
)

log = logging.getLogger("imagecomposer.deb")


@attrs.frozen
class IndexEntry:
    path: str
    sha256: str
    size: int


@attrs.frozen
class Release:
    fields: dict[str, str]
    files: dict[str, IndexEntry]  # relative path -> SHA256 entry
    # (file name, SHA-256) of the InRelease or Release file this was read from
    signed: tuple[str, str] | None = None

    @property
    def by_hash(self) -> bool:
        return self.fields.get("acquire-by-hash", "no").lower() == "yes"

    @property
    def date(self) -> int | None:
        """The ``Date:`` field (when the archive published this Release) in seconds since
        1970-01-01 UTC; None when it is missing or not an RFC 2822 date."""
        value = self.fields.get("date")
        try:
            moment = email.utils.parsedate_to_datetime(value) if value else None
        except (TypeError, ValueError):
            return None
        if moment is None or moment.tzinfo is None:
            return None
        return int(moment.timestamp())

    @property
    def valid_until(self) -> dt.datetime | None:
        value = self.fields.get("valid-until")
        return email.utils.parsedate_to_datetime(value) if value else None

    def check_valid_until(self, what: str, hint: str,
                          now: dt.datetime | None = None) -> None:
        until = self.valid_until
        now = now or dt.datetime.now(dt.UTC)
        if until is not None and now > until:
            raise MetadataExpired(f"Release file of {what} expired on {until:%Y-%m-%d %H:%M} "
                                  f"UTC (Valid-Until); {hint}")


def parse_release(text: str) -> Release:
    fields: dict[str, str] = {}
    files: dict[str, IndexEntry] = {}
    key = ""
    for line in text.splitlines():
        if line[:1] in (" ", "\t"):
            if key == "sha256":
                parts = line.split()
                if len(parts) == 3:
                    files[parts[2]] = IndexEntry(parts[2], parts[0].lower(), int(parts[1]))
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        fields[key] = value.strip()
    return Release(fields, files)


def cleartext(inrelease: bytes) -> str | None:
    """The signed text of a clearsigned ``InRelease`` as ``gpgv --output`` writes it, read
    from the file itself; None unless the file has the plain form (the armor header first,
    LF line ends). Used only to check cached gpgv verdicts, never instead of gpgv."""
    text = inrelease.decode("utf-8", "replace")
    head = "-----BEGIN PGP SIGNED MESSAGE-----\n"
    if not text.startswith(head) or "\r" in text:
        return None
    _, sep, rest = text[len(head):].partition("\n\n")
    body, sep2, _ = rest.partition("\n-----BEGIN PGP SIGNATURE-----\n")
    if not sep or not sep2:
        return None
    return "\n".join(line[2:] if line.startswith("- ") else line
                     for line in body.split("\n")) + "\n"


def gpg_keyring(key: Path, work: Path) -> Path:
    """A keyring gpgv can read: binary keyrings as they are, armored keys dearmored."""
    try:
        head = key.read_bytes()[:64]
    except OSError as exc:
        raise ConfigError(f"cannot read keyring {key}: {exc.strerror}") from exc
    if b"-----BEGIN PGP" not in head:
        return key.resolve()
    digest = hashlib.sha256(key.read_bytes()).hexdigest()[:24]
    out = work / f"{digest}.gpg"
    if not out.is_file():
        work.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.unlink(missing_ok=True)
        runner.run([runner.require("gpg", "gnupg"), "--batch", "--yes", "--dearmor",
                    "--output", tmp, key], env={"GNUPGHOME": str(work)}, capture=True)
        tmp.replace(out)
    return out


def verify(keyring: Path, *, inrelease: bytes | None = None, release: bytes | None = None,
           signature: bytes | None = None, what: str = "repository") -> str:
    """The verified Release text, or :class:`SignatureError`."""
    gpgv = runner.require("gpgv", "gpgv")
    if not keyring.is_file():
        raise ConfigError(f"keyring {keyring} for {what} does not exist (install the "
                          "archive keyring package or set the keyring in the configuration)")
    with tempfile.TemporaryDirectory(prefix="ic-gpgv-") as tmpdir:
        tmp = Path(tmpdir)
        home = tmp / "home"
        home.mkdir(mode=0o700)
        env = {"GNUPGHOME": str(home), "LC_ALL": "C"}
        argv: list[str | Path] = [gpgv, "--keyring", keyring]
        if inrelease is not None:
            (tmp / "InRelease").write_bytes(inrelease)
            argv += ["--output", tmp / "Release", tmp / "InRelease"]
        else:
            assert release is not None and signature is not None
            (tmp / "Release").write_bytes(release)
            (tmp / "Release.gpg").write_bytes(signature)
            argv += [tmp / "Release.gpg", tmp / "Release"]
        try:
            runner.run(argv, env=env, capture=True)
        except CommandError as exc:
            reason = "signature is invalid or made by a key not in the keyring"
            if "No public key" in exc.stderr_tail or "public key not found" in exc.stderr_tail:
                reason = "signed by a key that is not in the configured keyring"
            elif "BAD signature" in exc.stderr_tail:
                reason = "BAD signature (the file was modified)"
            elif "no valid OpenPGP data" in exc.stderr_tail or "no signature" in exc.stderr_tail:
                reason = "not signed"
            raise SignatureError(
                f"Signature verification failed for {what}: {reason} (keyring {keyring})\n"
                + "\n".join("  | " + line for line in exc.stderr_tail.splitlines())) from exc
        return (tmp / "Release").read_text(encoding="utf-8", errors="replace")

"""The sealing key and seals (imagecomposer.foundation.seal): created on first use with mode
0600, shared by concurrent creators, refused when other users could forge with it; a seal
binds the cache, the entry's key and the record; the key never shows in a repr or an error."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from imagecomposer.config import load_config
from imagecomposer.config.model import default_seal_key
from imagecomposer.foundation.errors import SealKeyError
from imagecomposer.foundation.seal import KEY_SIZE, SealKey, canonical


def test_key_is_created_on_first_use_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state/imagecomposer/cache.key"
    key = SealKey(path)
    assert not path.parent.exists()  # the constructor creates nothing
    seal = key.seal("images", "edge/abc", {"files": [1, 2]})
    assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_size == KEY_SIZE
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["cache.key"]  # no temporary left
    again = SealKey(path)  # another process: the same key from the file
    assert again.seal("images", "edge/abc", {"files": [1, 2]}) == seal
    assert again.check("images", "edge/abc", {"files": [1, 2]}, seal)
    other = SealKey(tmp_path / "other.key")
    assert not other.check("images", "edge/abc", {"files": [1, 2]}, seal)


def test_a_seal_binds_the_cache_the_entry_and_the_record(tmp_path: Path) -> None:
    key = SealKey(tmp_path / "k")
    record = {"files": {"initrd.img-6.1": "ab" * 32}, "n": 1}
    seal = key.seal("initramfs", "k1", record)
    assert key.check("initramfs", "k1", dict(reversed(record.items())), seal)  # canonical
    assert not key.check("initramfs", "k2", record, seal)  # copied to another entry
    assert not key.check("images", "k1", record, seal)  # another cache
    assert not key.check("initramfs", "k1", {**record, "n": 2}, seal)
    assert not key.check("initramfs", "k1", record, seal.upper())
    assert not key.check("initramfs", "k1", record, None)
    assert canonical("a", "b", {"y": 1, "x": "é"}) == \
        b'{"format":1,"key":"b","kind":"a","record":{"x":"\\u00e9","y":1}}'


def test_concurrent_creators_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "cache.key"
    code = ("import sys; from pathlib import Path; from imagecomposer.foundation.seal import "
            "SealKey; print(SealKey(Path(sys.argv[1])).seal('t', 'k', {}))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                              text=True) for _ in range(6)]
    seals = {p.communicate()[0].strip() for p in procs}
    assert len(seals) == 1 and all(len(s) == 64 for s in seals)
    assert [p.name for p in tmp_path.iterdir()] == ["cache.key"]


@pytest.mark.parametrize(("mode", "message"), [
    (0o644, "can be read by other users"),
    (0o620, "can be written by other users"),
    (0o602, "can be written by other users"),
])
def test_a_key_other_users_could_use_is_refused(tmp_path: Path, mode: int,
                                                message: str) -> None:
    path = tmp_path / "cache.key"
    path.write_bytes(os.urandom(KEY_SIZE))
    path.chmod(mode)
    with pytest.raises(SealKeyError, match=message):
        SealKey(path).seal("t", "k", {})
    path.chmod(0o640)  # readable through its group: machines sharing a cache share it
    assert len(SealKey(path).seal("t", "k", {})) == 64


def test_a_file_that_is_not_a_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / "cache.key"
    path.write_bytes(b"SECRET-LOOKING-CONTENT")
    path.chmod(0o600)
    with pytest.raises(SealKeyError) as info:
        SealKey(path).seal("t", "k", {})
    assert "exactly 32 bytes" in str(info.value) and "SECRET" not in str(info.value)
    (tmp_path / "dir.key").mkdir(mode=0o700)
    with pytest.raises(SealKeyError, match="not a regular file"):
        SealKey(tmp_path / "dir.key").seal("t", "k", {})


def test_an_uncreatable_key_is_one_clear_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(SealKeyError, match=r"cannot create the cache sealing key .*"
                                           r"storage\.seal_key"):
        SealKey(blocked / "cache.key").seal("t", "k", {})


def test_the_key_never_shows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache.key"
    key = SealKey(path)
    with caplog.at_level(logging.DEBUG):
        key.seal("t", "k", {})
    secret = path.read_bytes()
    shown = repr(key) + str(key) + caplog.text
    assert repr(key) == f"<SealKey {path}>"
    for form in (secret.hex(), secret.hex().upper(), repr(secret), str(list(secret))):
        assert form not in shown
    pickled = pickle.dumps(key)
    assert secret not in pickled and pickle.loads(pickled).seal("t", "k", {}) == \
        key.seal("t", "k", {})


def test_default_key_location(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    assert default_seal_key(home, euid=0) == Path("/var/lib/imagecomposer/cache.key")
    assert default_seal_key(home, euid=1000) == \
        tmp_path / ".local/state/imagecomposer/cache.key"
    assert default_seal_key({**home, "XDG_STATE_HOME": "/srv/s"}, euid=1000) == \
        Path("/srv/s/imagecomposer/cache.key")
    assert default_seal_key({**home, "IMAGECOMPOSER_SEAL_KEY": "/etc/ic/k"}, euid=0) == \
        Path("/etc/ic/k")


def test_configured_in_the_global_configuration(tmp_path: Path) -> None:
    config_file = tmp_path / "etc/config.yml"
    config_file.parent.mkdir()
    config_file.write_text("storage:\n  seal_key: keys/cache.key\n")
    loaded = load_config(config_file, environ={"HOME": str(tmp_path)})
    assert loaded.config.storage.seal_key == tmp_path / "etc/keys/cache.key"
    assert loaded.origins["storage.seal_key"] == f"{config_file}:2"
    env = load_config(config_file, environ={"HOME": str(tmp_path),
                                            "IMAGECOMPOSER_SEAL_KEY": "/srv/k"})
    assert env.config.storage.seal_key == Path("/srv/k")
    assert env.origins["storage.seal_key"] == "env IMAGECOMPOSER_SEAL_KEY"

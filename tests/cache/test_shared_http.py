"""The shared store as an HTTP object store (storage.shared_store_url), against a small
GET/PUT/DELETE server started here on 127.0.0.1: objects are checked before they are sent
and while they are read (a damaged object is never served, and is deleted); an image built on
one host is a hit on another through it; the store unreachable is a miss, never a failure;
the configuration chooses it."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagecomposer.cache.images import ImageCache
from imagecomposer.cache.shared_http import HttpStore, object_store_for
from imagecomposer.cache.store import PackageCache
from imagecomposer.config import load_config
from imagecomposer.foundation.errors import CacheError, ConfigError
from imagecomposer.foundation.seal import SealKey
from tests.cache.test_images import key_for, outputs
from tests.cluster.conftest import free_port

DATA = b"package bytes\n" * 100
DIGEST = hashlib.sha256(DATA).hexdigest()

class ObjectServer(http.server.ThreadingHTTPServer):
    """GET, HEAD, PUT (written aside, then renamed: atomic) and DELETE under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()  # "METHOD path"
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/store"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ObjectServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _path(self) -> Path | None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] != "store" or any(p in ("", ".", "..") for p in parts[1:]):
            return None
        return self.server.root.joinpath(*parts[1:])

    def _count(self) -> Path | None:
        self.server.requests[f"{self.command} {self.path}"] += 1
        return self._path()

    def do_GET(self) -> None:
        path = self._count()
        if path is None or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)

    do_HEAD = do_GET  # noqa: N815

    def do_PUT(self) -> None:
        path = self._count()
        if path is None:
            self.send_error(400)
            return
        data = self.rfile.read(int(self.headers["Content-Length"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}")
        tmp.write_bytes(data)
        tmp.replace(path)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self) -> None:
        path = self._count()
        if path is not None:
            path.unlink(missing_ok=True)
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ObjectServer]:
    (tmp_path / "objects").mkdir()
    served = ObjectServer(tmp_path / "objects")
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield served
    served.shutdown()
    served.server_close()


def test_objects_are_checked_before_they_are_sent_and_as_they_are_read(
        tmp_path: Path, server: ObjectServer, caplog: pytest.LogCaptureFixture) -> None:
    store = HttpStore(server.url)
    source = tmp_path / "source.deb"
    source.write_bytes(DATA)
    store.publish("packages", DIGEST, source, "deb")
    on_server = server.root / "packages" / DIGEST[:2] / f"{DIGEST}.deb"
    assert on_server.read_bytes() == DATA
    store.publish("packages", DIGEST, source, "deb")  # there already: not sent again
    assert sum(n for r, n in server.requests.items() if r.startswith("PUT")) == 1
    assert store.copy_to("packages", DIGEST, tmp_path / "copy.deb", "deb")
    assert (tmp_path / "copy.deb").read_bytes() == DATA

    # content that does not match its name is not sent
    other = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(CacheError, match="refusing to publish"):
        store.publish("packages", other, source, "deb")
    assert not list(server.root.rglob(f"{other}*"))

    # a damaged object on the server is never served, and is deleted there
    on_server.write_bytes(DATA[:50])
    assert not store.copy_to("packages", DIGEST, tmp_path / "again.deb", "deb")
    assert not (tmp_path / "again.deb").exists() and not on_server.exists()
    assert "is damaged" in caplog.text
    assert not store.copy_to("packages", DIGEST, tmp_path / "missing.deb", "deb")  # 404


def test_an_image_built_on_one_host_is_a_hit_on_another_through_http(
        tmp_path: Path, project: Path, server: ObjectServer) -> None:
    key = key_for(project)
    built = outputs(tmp_path, "built")
    seal = SealKey(tmp_path / "cluster.key")
    one = ImageCache(tmp_path / "one", seal_key=seal, shared=HttpStore(server.url))
    assert one.store(key, built) is not None
    [record] = server.root.rglob("*.json")
    assert json.loads(record.read_text())["digest"] == key.digest
    two = ImageCache(tmp_path / "two", seal_key=seal, shared=HttpStore(server.url))
    entry = two.lookup(key)
    assert entry is not None and entry.shared
    assert two.restore(entry, tmp_path / "out") is not None
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == \
        {p.name: p.read_bytes() for p in built.iterdir()}

    # a damaged image object: a miss on a third host, deleted on the server with its record
    raw = hashlib.sha256((built / "edge.raw").read_bytes()).hexdigest()
    victim = next(server.root.rglob(raw))
    victim.write_bytes(b"forged")
    three = ImageCache(tmp_path / "three", seal_key=seal, shared=HttpStore(server.url))
    assert three.lookup(key) is None and three.list() == []
    assert not victim.exists() and not record.exists()


def test_an_unreachable_store_is_a_miss(tmp_path: Path, project: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    gone = HttpStore(f"http://127.0.0.1:{free_port()}/store")
    caplog.set_level(logging.WARNING)
    assert not gone.copy_to("packages", DIGEST, tmp_path / "x.deb", "deb")
    cache = ImageCache(tmp_path / "cache", seal_key=SealKey(tmp_path / "k"), shared=gone)
    key = key_for(project)
    assert cache.lookup(key) is None
    assert cache.store(key, outputs(tmp_path, "built")) is not None  # the build is kept
    assert "could not publish" in caplog.text


def test_the_configuration_chooses_the_http_store(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yml"
    config_path.write_text(
        f"core: {{cache_dir: '{tmp_path}/cache', work_dir: '{tmp_path}/work'}}\n"
        f"storage: {{shared_store: '{tmp_path}/shared', "
        "shared_store_url: 'http://127.0.0.1:1/store'}\n")
    config = load_config(config_path).config
    chosen = object_store_for(config)
    assert isinstance(chosen, HttpStore) and chosen.url == "http://127.0.0.1:1/store"
    assert isinstance(PackageCache(config).shared, HttpStore)
    assert isinstance(ImageCache.for_config(config).shared, HttpStore)
    with pytest.raises(ConfigError, match="not an http"):
        HttpStore("ftp://example.invalid/store")

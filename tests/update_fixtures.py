"""The fixtures the update tests share: the release key and a stranger's, a real `rauc
service` booted from slot A (tests/rauc_system.py), and bundles served over loopback HTTP.

A module takes them with `from update_fixtures import ...`; pytest finds fixtures by name in
the module's namespace."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rauc_system import RaucService, Signer, make_signer, write_system_conf


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, Signer]:
    """(the release key the box trusts, a stranger's key)"""
    directory = tmp_path_factory.mktemp("keys")
    return make_signer(directory, "release"), make_signer(directory, "stranger")


@pytest.fixture
def service(tmp_path: Path, signers: tuple[Signer, Signer]) -> Iterator[RaucService]:
    conf = write_system_conf(tmp_path / "system", signers[0].ca)
    running = RaucService(tmp_path / "system", conf).start()
    yield running
    running.stop()


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(the URL of a loopback HTTP server, the directory it serves)"""
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args: object, **kwargs: object) -> _Files:
        return _Files(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()

"""The fixtures every console test module uses: real recordings delivered once per module,
a fresh copy of that site per test, an injected clock, the console service and a client.

A module takes them with `from console_fixtures import ...`; pytest finds fixtures by name in
the module's namespace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from console_site import Clock, console, copy_site, deliver
from linerec.collector.web.app import build_app
from linerec.collector.web.service import ConsoleService


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return deliver(tmp_path_factory.mktemp("console") / "site")


@pytest.fixture
def site(delivered: Path, tmp_path: Path, engine: str) -> Path:
    """A private copy of the delivered site, its database on the test's engine."""
    return copy_site(delivered, tmp_path / "site")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(site: Path, clock: Clock) -> ConsoleService:
    return console(site, clock)


@pytest.fixture
def client(service: ConsoleService) -> Iterator[TestClient]:
    with TestClient(build_app(service), base_url="http://127.0.0.1") as test_client:
        yield test_client

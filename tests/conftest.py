"""Shared helpers: run scripted calls through the real code path and look at what was kept."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import databases
from enrolled import Site, TlsBroker, enrol_site
from linerec.call.events import CallEvent
from linerec.codec import Samples
from linerec.config import load_config
from linerec.daemon.events import RecordingSealed
from linerec.daemon.simulate import Simulation, simulate
from linerec.resources import data_path
from linerec.store.keys import load_private
from linerec.store.reader import Decrypted, decrypt
from linerec.wav import read_wav
from postgres import PostgresServer

RunSim = Callable[..., Simulation]


ENGINES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "engines(*names): run a test taking `engine` on these engines only"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `engine` (or a module that uses it) runs once on each engine."""
    if "engine" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("engines")
        metafunc.parametrize("engine", marker.args if marker else ENGINES, indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (started only if a test needs it)."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The engine of the collector's metadata in this test: each database the test opens
    (tests/databases.py) is on it, a fresh one per test."""
    name = str(request.param)
    server = request.getfixturevalue("postgres_server") if name == "postgresql" else None
    databases.selected = databases.Databases(name, server)
    yield name
    databases.selected.drop_all()
    databases.selected = databases.Databases()


@pytest.fixture(scope="module")
def enrolled_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A TLS broker with ACLs and two enrolled devices, box1 and box2 (set up once a module);
    each test starts its own collector with `enrolled.RunningCollector`."""
    site = enrol_site(tmp_path_factory.mktemp("site"))
    broker = TlsBroker(site).start()
    yield site
    broker.stop()


@pytest.fixture
def run_sim(tmp_path: Path) -> RunSim:
    """run_sim(call_text, ..., config=TEXT): record the calls; returns the Simulation."""

    def run(*calls: str, config: str | None = None, store: Path | None = None) -> Simulation:
        files = []
        for index, text in enumerate(calls):
            path = tmp_path / f"call{index}.toml"
            path.write_text(text)
            files.append(path)
        loaded = None
        if config is not None:
            config_path = tmp_path / "linerec.toml"
            config_path.write_text(config)
            loaded = load_config(config_path)
        return simulate(
            files, config=loaded, store_dir=store or tmp_path / "store", emit=lambda e: None
        )

    return run


def names(events: list[CallEvent], line: str | None = None) -> list[str]:
    return [e.name for e in events if line is None or e.line == line]


def first(events: list[CallEvent], name: str, line: str = "line1") -> CallEvent:
    return next(e for e in events if e.name == name and e.line == line)


def sealed(sim: Simulation) -> list[RecordingSealed]:
    return [e for e in sim.events if isinstance(e, RecordingSealed)]


def recording(sim: Simulation, line: str = "line1") -> Decrypted:
    """The one recording kept on `line`, decrypted with the simulation's demo key."""
    (event,) = [e for e in sealed(sim) if e.line == line]
    assert sim.demo_key is not None
    return decrypt(Path(event.path).read_bytes(), load_private(sim.demo_key))


def clip(name: str) -> Samples:
    return read_wav(data_path(f"speech/{name}.wav")).mono


def find(haystack: Samples, needle: Samples) -> tuple[int, float]:
    """Where `needle` best matches inside `haystack`, and how well (SNR in dB of the match)."""
    h = haystack.astype(np.float64)
    n = needle.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(h) + len(n))))
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(n, size)), size)[
        : len(h) - len(n) + 1
    ]
    offset = int(np.argmax(corr))
    segment = h[offset : offset + len(n)]
    gain = float(np.dot(segment, n) / np.dot(n, n))
    residual = segment - gain * n
    snr = 10 * np.log10(np.dot(gain * n, gain * n) / max(np.dot(residual, residual), 1e-9))
    return offset, float(snr)


def tone_onsets(
    samples: Samples, frequency: float, *, rate: int = 8000
) -> list[tuple[float, float]]:
    """(start, length) in seconds of each burst of `frequency`, from a 40 ms sliding envelope."""
    window, hop = 320, 40
    t = np.arange(window) / rate
    probe = np.exp(-2j * np.pi * frequency * t) * np.hanning(window)
    frames = np.lib.stride_tricks.sliding_window_view(samples.astype(np.float64), window)[::hop]
    envelope = np.abs(frames @ probe)
    on = envelope > envelope.max() / 2
    edges = np.flatnonzero(np.diff(on.astype(np.int8)))
    bursts = []
    state = bool(on[0])
    start = 0.0 if state else None
    for index in edges:
        at = (index + 1) * hop / rate + window / 2 / rate
        if not state:
            start = at
        else:
            assert start is not None
            bursts.append((start, at - start))
        state = not state
    return bursts

"""Property: whatever an enrolled device publishes on the topics the collector reads, the
collector goes on serving the other device, logs no traceback, stays within bounded memory
and writes nothing outside its data directory. Real TLS broker, real collector, real
appliance code for the other device; hypothesis with a fixed, derandomized search."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from enrolled import DeviceLink, HonestDevice, RunningCollector, Site
from linerec.collector.service import Collector


class Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@dataclass
class Rig:
    collector: Collector
    box1: DeviceLink
    box2: HonestDevice
    data_dir: Path
    root: Path
    before: set[Path]
    tracebacks: Tracebacks
    rss_start: int


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def rig(enrolled_site: Site) -> Iterator[Rig]:
    data_dir = enrolled_site.root / "fuzz-central"
    handler = Tracebacks()
    logging.getLogger("linerec").addHandler(handler)
    with (
        RunningCollector(enrolled_site, data_dir) as collector,
        DeviceLink(enrolled_site, "box1") as box1,
        HonestDevice(enrolled_site, "box2") as box2,
    ):
        before = {p for p in enrolled_site.root.rglob("*") if p.is_file()}
        yield Rig(collector, box1, box2, data_dir, enrolled_site.root, before, handler, rss())
    logging.getLogger("linerec").removeHandler(handler)


# Topic levels MQTT allows in a publish: no '/', '+', '#', NUL or other control characters.
LEVEL = st.text(
    st.characters(blacklist_characters="/+#", blacklist_categories=("Cs", "Cc")), max_size=80
)
OWN_IDS = st.integers(1, 3).map(lambda n: f"box1-{n:08d}-20260101T120000Z-line1")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
EVENT = st.one_of(
    st.binary(max_size=2000),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.integers(900, 30_000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    st.fixed_dictionaries(
        {
            "seq": st.one_of(
                st.integers(-5, 10**30),
                st.sampled_from([10**12, 2**63, 2**64, 10**100]),
                st.booleans(),
                st.floats(),
                st.text(),
            )
        },
        optional={"event": st.text(max_size=10), "at": JSON},
    ).map(lambda v: json.dumps(v).encode()),
)
NUMBER = st.one_of(st.integers(-(10**20), 10**20).map(str), st.integers(0, 200_000).map(str), LEVEL)
DIGEST = st.one_of(st.binary(max_size=64).map(lambda b: hashlib.sha256(b).hexdigest()), LEVEL)


@st.composite
def upload(draw: st.DrawFn) -> tuple[str, bytes, list[tuple[str, str]] | None]:
    recording = draw(st.one_of(OWN_IDS, LEVEL, st.sampled_from(["..", ".", "$SYS"])))
    payload = draw(st.binary(max_size=40_000))
    if draw(st.booleans()):
        props = [
            ("offset", draw(st.one_of(st.just("0"), NUMBER))),
            ("size", draw(st.one_of(st.just(str(len(payload))), NUMBER))),
            ("sha256", draw(st.one_of(st.just(hashlib.sha256(payload).hexdigest()), DIGEST))),
        ]
        props = draw(st.lists(st.sampled_from(props), max_size=4)) if draw(st.booleans()) else props
    else:
        props = None
    return f"upload/{recording}", payload, props


MESSAGE = st.one_of(
    EVENT.map(lambda payload: ("event", payload, None)),
    upload(),
    st.tuples(LEVEL, st.binary(max_size=100), st.none()),  # a topic the collector does not read
)


@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(messages=st.lists(MESSAGE, min_size=1, max_size=3))
def test_whatever_a_device_sends_the_collector_serves_the_others(
    rig: Rig, messages: list[tuple[str, bytes, list[tuple[str, str]] | None]]
) -> None:
    for rest, payload, props in messages:
        properties = None
        if props is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = props
        rig.box1.publish(f"linerec/v1/box1/{rest}", payload, properties)
    stored = rig.box2.upload_and_wait()  # the other device's real upload completes, acked
    assert rig.collector.store.stored("box2", stored) is not None
    # box1 sends no real recording here: nothing of its is indexed, or acked as stored
    assert [r for r in rig.collector.store.recordings() if r["device"] == "box1"] == []
    assert not any(ack.get("kind") == "recording" for ack in rig.box1.acks)
    assert rig.tracebacks.records == [], rig.tracebacks.records[0].getMessage()
    assert rss() - rig.rss_start < 200 * 1024 * 1024
    # the collector's data directory and box2's own ring are the only places written to
    allowed = (rig.data_dir.resolve(), (rig.root / "box2-ring").resolve())
    new = {p for p in rig.root.rglob("*") if p.is_file()} - rig.before
    assert [p for p in new if not any(p.resolve().is_relative_to(a) for a in allowed)] == []

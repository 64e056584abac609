"""A call split into parts (a stall or a store error sealed the first and the call went on) is
opted out: the part already at the collector goes there too.

A real mosquitto and collector; the appliance's ring and uplink as `linerec run` has them.
The appliance takes the sealed part off its card with reason `opted-out` and reports it with
`recording_deleted` (as `LinePipeline` does on an opt-out); the collector, which had stored
and acknowledged that part, crypto-shreds it, logs the deletion, links its number as opted
out, and stores no piece of it that comes later."""

from __future__ import annotations

import errno
import hashlib
import logging
from collections.abc import Callable

import pytest

from calls import wait_until
from linerec.call.events import CallEvent
from linerec.daemon.events import RecordingDeleted
from linerec.daemon.storage import queueing
from linerec.mqttapi import CHUNK
from linerec.store.disk import OsDisk
from streamed import StreamedSite as Site
from test_streaming import Device, site, talk  # noqa: F401  (site: the fixture)


def reporter(site: Site) -> Callable[[CallEvent], None]:
    """The appliance's events, queued for the collector as the daemon queues them."""
    return queueing(lambda event: None, site.uplink.outbox, device_id="box1", t0=0.0)


def report_opted_out(site: Site, part: str, **fields: object) -> None:
    """box1 takes `part` off its card as a part of an opted-out call and reports it as the
    daemon does, with `fields` (recording_seq, header_hash, acknowledged) in place of what
    the card has."""
    entry = site.ring.entries[part]
    site.ring.delete(part, "opted-out")
    reported: dict[str, object] = {
        "recording_seq": entry.seq,
        "header_hash": entry.header_hash,
        "acknowledged": entry.acknowledged,
        **fields,
    }
    reporter(site)(
        RecordingDeleted(
            t=5.0,
            line="",
            id=part,
            seq=entry.seq,
            reason="opted-out",
            prev=entry.prev,
            **reported,  # type: ignore[arg-type]
        )
    )


def stored(site: Site) -> list[str]:
    return [str(row["id"]) for row in site.collector.store.recordings()]


def test_a_part_of_an_opted_out_call_already_stored_is_deleted_at_the_collector(
    site: Site,
) -> None:
    first = site.begin()
    talk(site, first, 1.0, "the first part streamed")
    part = first.seal(ended_by="capture-stalled")
    wait_until(lambda: site.ring.entries[part.id].acknowledged, "the first part acknowledged")
    assert stored(site) == [part.id]
    second = site.begin()  # the call goes on after the stall
    talk(site, second, 1.0, "the second part streamed")

    # The caller opts out: the part being written is discarded, the sealed one deleted.
    second.discard("opted-out")
    report_opted_out(site, part.id)
    assert site.uplink.outbox.flush(10)  # durable first: pending() leaves out what is queued
    wait_until(lambda: site.uplink.outbox.pending() == [], "the events acknowledged")
    wait_until(lambda: site.uplink.streams.discarded() == [], "the discard acknowledged")

    store = site.collector.store
    assert stored(site) == []
    assert not list((site.root / "central").rglob(f"{part.id}*.lrec"))
    (deletion,) = store.deletions()
    assert (deletion["id"], deletion["reason"]) == (part.id, "opted-out")
    assert any(
        a["action"] == "delete" and a["recording"] == part.id and a["who"] == "device box1"
        for a in store.audit_log()
    )
    chain = {link["seq"]: link["state"] for link in store.chain("box1")}
    assert chain[1] == "opted-out"  # linked as left out, not as deleted here nor missing
    assert store.uploads.under_way() == []


class LateDevice(Device):
    """box1's own MQTT session, sending a whole recording as its uplink does."""

    def upload(self, recording_id: str, data: bytes) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        digest = hashlib.sha256(data).hexdigest()
        for offset in range(0, len(data), CHUNK):
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = [
                ("offset", str(offset)),
                ("size", str(len(data))),
                ("sha256", digest),
            ]
            self.client.publish(
                f"linerec/v1/{self.device}/upload/{recording_id}",
                data[offset : offset + CHUNK],
                qos=1,
                properties=properties,
            ).wait_for_publish(10)


def test_the_upload_of_a_part_coming_after_its_opt_out_is_not_stored(site: Site) -> None:
    """The deletion reached the collector before the part's own upload (its pieces were in
    flight, or the uplink had read the file before it left the card): the late whole is not
    stored, and its number stays linked as opted out."""
    first = site.begin()
    talk(site, first, 1.0, "the first part streamed")
    part = first.seal(ended_by="capture-stalled")
    data = part.path.read_bytes()
    # perhaps before the uplink sent it, perhaps after
    report_opted_out(site, part.id, acknowledged=False)
    assert site.uplink.outbox.flush(10)  # durable first: pending() leaves out what is queued
    wait_until(lambda: site.uplink.outbox.pending() == [], "the deletion acknowledged")
    device = LateDevice(site.broker.port, site.root / "keys" / "collector.pub")
    try:
        device.upload(part.id, data)  # late
        other = "box1-00000009-20261130T000000Z-line2"
        device.stream(other, 0, b"\3" * 4096)  # handled after the late one: in order
        device.ack("streamed", other)
    finally:
        device.close()
    assert stored(site) == []
    assert [row["id"] for row in site.collector.store.uploads.under_way()] == [other]
    assert {link["seq"]: link["state"] for link in site.collector.store.chain("box1")} == {
        1: "opted-out"
    }


def said_opted_out(site: Site, part: str, **wrong: object) -> None:
    """box1 takes `part` off its card as a part of an opted-out call and reports it, with the
    fields in `wrong` (recording_seq, header_hash) not as the card has them; then waits until
    the collector has handled the event."""
    report_opted_out(site, part, **wrong)
    # The deletion is box1's first event here: handled (and committed) once it is stored.
    wait_until(lambda: site.collector.store.contiguous_seq("box1") >= 1, "the deletion handled")


def stored_part(site: Site) -> str:
    """A part of a call sealed at a stall, stored and acknowledged at the collector."""
    first = site.begin()
    talk(site, first, 1.0, "the first part streamed")
    part = first.seal(ended_by="capture-stalled")
    wait_until(lambda: site.ring.entries[part.id].acknowledged, "the part acknowledged")
    assert stored(site) == [part.id]
    return part.id


def test_a_part_of_an_opted_out_call_on_legal_hold_stays_at_the_collector(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """A legal hold outranks the opt-out: the part stays stored, no deletion is logged, and
    the log says it was kept, never that it was deleted."""
    part = stored_part(site)
    site.collector.store.hold(part, True, "box1")
    with caplog.at_level(logging.INFO, logger="linerec.collector.service"):
        said_opted_out(site, part)
    assert stored(site) == [part]
    assert site.collector.store.deletions() == []
    said = [r.getMessage() for r in caplog.records if part in r.getMessage()]
    assert any(f"{part} is said to be opted-out: kept" in message for message in said), said
    assert not [message for message in said if "deleted" in message], said


@pytest.mark.parametrize(
    ("field", "wrong"),
    [("recording_seq", 7), ("header_hash", "ab" * 32)],
)
def test_an_opt_out_naming_a_stored_part_with_another_chain_link_is_refused(
    site: Site, field: str, wrong: object
) -> None:
    """A buggy or stolen box names a recent recording by its id, but not with the number or
    header hash the recording has: nothing is shredded, and the problem names the device,
    the id and the field that differs."""
    part = stored_part(site)
    said_opted_out(site, part, **{field: wrong})
    assert stored(site) == [part]
    assert site.collector.store.deletions() == []
    # nor is any number linked as opted out on the word of that event
    chain = {link["seq"]: link["state"] for link in site.collector.store.chain("box1")}
    assert chain == {1: "stored"}
    assert any(
        problem.startswith(f"device box1: {part} is said to be opted-out, but its {field} ")
        and "refused" in problem
        for problem in site.collector.problems
    ), site.collector.problems


class FailingCard(OsDisk):
    """The card, failing every write (EIO) while `failing`."""

    failing = False

    def pwrite(self, handle: int, data: bytes, offset: int) -> None:
        if self.failing:
            raise OSError(errno.EIO, "Input/output error")
        super().pwrite(handle, data, offset)


def test_a_part_whose_seal_failed_is_dropped_at_the_collector_when_opted_out(
    site: Site,
) -> None:
    """The card failed the seal of a part streamed live (left for recovery at the next
    start): the collector holds what was streamed of it. The caller opts out: the part is
    discarded on the card, and what the collector got of it goes too."""
    card = site.ring.disk = FailingCard()
    part = site.begin()
    talk(site, part, 1.0, "the part streamed")
    card.failing = True
    with pytest.raises(OSError, match="Input/output error"):
        part.seal(ended_by="store-error")
    card.failing = False
    assert site.in_progress() == [part.id]

    part.discard("opted-out")  # as LinePipeline does on the opt-out
    wait_until(lambda: site.uplink.streams.discarded() == [], "the discard acknowledged")
    assert site.in_progress() == []
    assert stored(site) == []
    assert not list((site.root / "central").rglob(f"{part.id}*"))
    assert not list(site.ring.dir.glob("*.lrec"))
    assert site.ring.recover() == []

"""An opted-out call leaves nothing on the card, even when its capture stalls around the opt-out.

`linerec run` on a busy machine: a capture thread not scheduled for `CAPTURE_STALL` looks
stalled, so the daemon seals what was kept ("capture-stalled") and, when audio comes again,
goes on with the call in a new recording. Two ways that once left a recording of an
opted-out call (the flaky `test_a_call_opted_out_mid_stream_by_command_leaves_nothing_at_the_
collector` stored its box1-00000002):

* the opt-out command came while the capture thread held audio from before it; the line was
  judged stalled, so the command was carried out at once, at the moment it came; then the
  capture thread handed over the audio from before that moment, which began a new recording
  of the opted-out call (sealed at the hang-up, uploaded);
* a stall had already split the call: the opt-out discarded the part being written, and the
  part sealed at the stall stayed (and went to the collector).

The simulated line runs paced, capture up to a block ahead of the main loop; the daemon's
monotonic clock is injected so that, seen from the main loop, the capture thread falls silent
for 3 s at a chosen event and is heard again at another: no sleeping, no real stall."""

from __future__ import annotations

import errno
import json
import threading
import time
from pathlib import Path

import pytest

from linerec.call.events import CallEvent
from linerec.config import load_config
from linerec.daemon.backends import open_sim_backend
from linerec.daemon.events import RecordingDeleted
from linerec.daemon.service import CAPTURE_STALL, Daemon
from linerec.daemon.simulate import default_config, demo_keys
from linerec.daemon.storage import open_store
from linerec.sim.callfile import load_call_file
from linerec.store import keys as keyfiles
from linerec.store.disk import OsDisk
from linerec.store.ring import RecordingDeleted as Deleted
from linerec.store.ring import RingStore
from linerec.uplink.commands import Command

CALL = (
    "[[call]]\n[[call.step]]\nat = 0.5\nring = 1\n[[call.step]]\nwait = 0.5\n"
    '[[call.step]]\noff_hook = true\n[[call.step]]\nsay = "caller"\nseconds = 1.5\n'
    "[[call.step]]\nflash = 0.3\n"
    + '[[call.step]]\nsay = "office"\nseconds = 1.5\n[[call.step]]\nsay = "caller"\nseconds = 1.5\n'
    + "[[call.step]]\non_hook = true\n"
)
LAG = CAPTURE_STALL + 1.0
# Paced in real time, so that the capture thread waits on its card, as a real one does,
# holding the periods it has read, rather than on a full queue (which is never a stall).
SPEED = 1.0


def _run(
    tmp_path: Path, *, stall_on: str, opt_out_on: str, heard_again_on: str
) -> tuple[list[CallEvent], Path]:
    """The call through the daemon: from the event `stall_on` the main loop hears nothing from
    the capture thread (its clock runs `LAG` ahead of the capture thread's) until the event
    `heard_again_on`; the opt-out command is sent upon `opt_out_on`."""
    config_path = tmp_path / "linerec.toml"
    config_path.write_text(
        f'[store]\ndir = "{tmp_path / "ring"}"\n[[line]]\nconsent = "one-party"\n'
    )
    callfile = tmp_path / "call.toml"
    callfile.write_text(CALL)
    config, backend = open_sim_backend(
        load_config(config_path), load_call_file(callfile), speed=SPEED, echo=False
    )
    _private, public = demo_keys(tmp_path / "ring")
    events: list[CallEvent] = []
    daemons: list[Daemon] = []
    threads: list[threading.Thread] = []
    ahead = {"main": 0.0, "capture": 0.0}
    stop = threading.Event()
    sent = threading.Event()

    def monotonic() -> float:
        capture = threading.current_thread().name.startswith("capture")
        return time.monotonic() + ahead["capture" if capture else "main"]

    def emit(event: CallEvent) -> None:
        events.append(event)
        if event.name == stall_on and not ahead["main"]:
            ahead["main"] = LAG
        if event.name == heard_again_on and ahead["main"]:
            ahead["capture"] = LAG
        if event.name == opt_out_on and not sent.is_set():
            sent.set()
            command = Command(counter=1, action="opt_out", arguments={"line": "line1"})
            sender = threading.Thread(target=daemons[0].submit_command, args=(command,))
            sender.start()  # from another thread, as the uplink's commands come
            threads.append(sender)
        if event.name == "hung_up":
            stop.set()

    store = open_store(config, emit=emit, clock=backend.clock, recipients=[public])
    daemon = Daemon(config, backend, store, emit=emit, monotonic=monotonic)
    daemons.append(daemon)
    daemon.start()
    runner = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive(), "the call never ended"
    daemon.shutdown()
    for thread in threads:
        thread.join()
    return events, tmp_path / "ring"


def _nothing_kept(events: list[CallEvent], ring: Path) -> None:
    names = [e.name for e in events]
    assert any(
        e.name == "fault" and "capture stalled" in e.message  # type: ignore[attr-defined]
        for e in events
    ), names  # the line was judged stalled, as on a busy machine
    assert names.count("opted_out") == 1
    assert [e.recorded for e in events if e.name == "hung_up"] == [False]  # type: ignore[attr-defined]
    sealed = [e.id for e in events if e.name == "recording_sealed"]  # type: ignore[attr-defined]
    deleted = {e.id: e.reason for e in events if e.name == "recording_deleted"}  # type: ignore[attr-defined]
    assert all(deleted.get(i) == "opted-out" for i in sealed), (sealed, deleted)
    assert not list(ring.glob("*.lrec")), names


def test_audio_from_before_an_opt_out_that_came_while_capture_stalled_is_not_kept(
    tmp_path: Path,
) -> None:
    """The command comes as the capture falls silent; the line is judged stalled, the opt-out
    carried out; then the capture thread hands over the audio it held from before it."""
    events, ring = _run(
        tmp_path, stall_on="hook_flash", opt_out_on="hook_flash", heard_again_on="opted_out"
    )
    _nothing_kept(events, ring)


def test_an_opt_out_after_a_stall_split_the_call_discards_the_earlier_part_too(
    tmp_path: Path,
) -> None:
    """A stall sealed the first part of the call ("capture-stalled") and the call went on into
    a second; the opt-out then takes both off the card, the first as `opted-out` too."""
    events, ring = _run(
        tmp_path,
        stall_on="hook_flash",
        heard_again_on="recording_sealed",
        opt_out_on="recording_sealed",
    )
    first = next(e for e in events if e.name == "recording_sealed")
    assert first.ended_by == "capture-stalled"  # type: ignore[attr-defined]
    _nothing_kept(events, ring)


class FailingCard(OsDisk):
    """The card fails the writes numbered in `failing` (EIO), as a worn SD card does."""

    def __init__(self, failing: set[int]) -> None:
        self.writes = 0
        self.failing = failing

    def pwrite(self, handle: int, data: bytes, offset: int) -> None:
        self.writes += 1
        if self.writes in self.failing:
            raise OSError(errno.EIO, "Input/output error")
        super().pwrite(handle, data, offset)


def _opt_out_after_store_error(
    tmp_path: Path, *, failing: set[int], opt_out_on: str
) -> tuple[list[CallEvent], Path]:
    """A call through the daemon on a card that fails the writes `failing`; the opt-out
    command is sent upon the first event named `opt_out_on`. Returns the events and the ring."""
    callfile = tmp_path / "call.toml"
    callfile.write_text(
        '[[call]]\n[[call.step]]\noff_hook = true\n[[call.step]]\nsay = "caller"\n'
        '[[call.step]]\nsay = "office"\n[[call.step]]\non_hook = true\n'
    )
    config = default_config(["line1"], tmp_path / "ring", {"line1": "one-party"})
    config, backend = open_sim_backend(config, load_call_file(callfile), speed=0)
    _private, public = demo_keys(tmp_path / "ring")
    events: list[CallEvent] = []
    daemons: list[Daemon] = []
    senders: list[threading.Thread] = []

    def emit(event: CallEvent) -> None:
        events.append(event)
        if event.name == opt_out_on and not senders:
            command = Command(counter=1, action="opt_out", arguments={"line": "line1"})
            senders.append(threading.Thread(target=daemons[0].submit_command, args=(command,)))
            senders[0].start()

    store = RingStore(
        config.store.dir,
        recipients=[keyfiles.load_public(public)],
        identity=keyfiles.load_or_create_identity(tmp_path / "id.key"),
        disk=FailingCard(failing),
        on_event=lambda event: events.append(
            RecordingDeleted(
                t=backend.clock(),
                line="",
                id=event.id,
                seq=event.seq,
                recording_seq=event.seq,
                reason=event.reason,
                acknowledged=event.acknowledged,
            )
            if isinstance(event, Deleted)
            else event  # type: ignore[arg-type]
        ),
    )
    daemon = Daemon(config, backend, store, emit=emit)
    daemons.append(daemon)
    daemon.start()
    daemon.run(threading.Event(), until=backend.script_end("line1") + 1.5)
    daemon.shutdown()
    for sender in senders:
        sender.join()
    assert senders, f"no {opt_out_on} event to send the opt-out upon"
    return events, config.store.dir


def test_an_opt_out_after_a_store_error_split_the_call_takes_the_part_before_it(
    tmp_path: Path,
) -> None:
    """The card failed a write mid-call: the part before the error was sealed ("store-error")
    and the call was to go on into a new recording once the store recovered. The caller opts
    out meanwhile: the sealed part leaves the card too, and no new recording begins."""
    events, ring = _opt_out_after_store_error(tmp_path, failing={6}, opt_out_on="recording_sealed")
    (sealed,) = [e for e in events if e.name == "recording_sealed"]
    assert sealed.ended_by == "store-error"  # type: ignore[attr-defined]
    (deleted,) = [e for e in events if e.name == "recording_deleted"]
    assert (deleted.id, deleted.reason) == (sealed.id, "opted-out")  # type: ignore[attr-defined]
    assert [e.recorded for e in events if e.name == "hung_up"] == [False]  # type: ignore[attr-defined]
    assert not list(ring.glob("*.lrec"))


@pytest.mark.parametrize("card_recovers", [True, False], ids=["card-recovers", "card-failing"])
def test_an_opt_out_takes_a_part_whose_seal_failed_too_and_recovery_leaves_it_gone(
    tmp_path: Path, card_recovers: bool
) -> None:
    """The card failed a write mid-call and then the seal of that part as well: the part is
    on the card unsealed, meant for recovery at the next start. The caller opts out: that
    part is discarded as the one being written would be (its deletion logged, reported), so
    neither this run nor the recovery of the next start keeps or uploads any of it. A card
    that fails the log line too still loses the file (said as a fault): an opted-out call
    is not kept for its number's sake."""
    failing = {6, 7} if card_recovers else set(range(6, 12))
    events, ring = _opt_out_after_store_error(tmp_path, failing=failing, opt_out_on="fault")
    assert not [e for e in events if e.name == "recording_sealed"]
    (part,) = {e.id for e in events if e.name == "recording_deleted"}  # type: ignore[attr-defined]
    assert {e.reason for e in events if e.name == "recording_deleted"} == {"opted-out"}  # type: ignore[attr-defined]
    assert [e.recorded for e in events if e.name == "hung_up"] == [False]  # type: ignore[attr-defined]
    assert not list(ring.glob("*.lrec"))
    log = ring / "ring.log"
    logged = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    faults = [e.message for e in events if e.name == "fault"]  # type: ignore[attr-defined]
    if card_recovers:
        assert [(line["id"], line["event"]) for line in logged] == [(part, "opted-out")]
        assert not [m for m in faults if m.startswith("opt-out")]
    else:
        assert logged == []
        assert [m for m in faults if m.startswith("opt-out")] == [
            "opt-out discard: [Errno 5] Input/output error"
        ]

    _private, public = demo_keys(ring)
    again = RingStore(
        ring,
        recipients=[keyfiles.load_public(public)],
        identity=keyfiles.load_or_create_identity(tmp_path / "id.key"),
    )
    assert again.recover() == []
    assert again.entries == {}
    assert not list(ring.glob("*.lrec"))

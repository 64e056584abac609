"""Benchmark of the uplink and the collector on loopback: prints figures, asserts nothing.

    .venv/bin/python bench/uplink.py [--events 300] [--backlog 20] [--lines 500] [--seconds 20]
        [--stream-lines 4] [--stream-seconds 20] [--only-streaming]
        [--browser-joins 5] [--browser-bursts 6] [--only-browser]

A real mosquitto on a free loopback port; the appliance side and the collector run in this
process (threads), as they would on two machines.

0. What an event costs the daemon's main loop: fsyncs on the emitting thread per event
   (counted by wrapping os.fsync/os.fdatasync; before issue 16 it was 2 per event, a data and
   a directory sync, on the audio loop) and the time of one append; and the fsyncs the
   store's writer thread then does per event (it seals and syncs; batches share a dir sync).
1. Event latency: events queued by the appliance (durable outbox, as the daemon queues them)
   one every 20 ms, their fields sealed to the collector, to their row in the collector's
   database: median and p99. Off hook to event adds the hook debounce (30 ms) and at most one
   frame (20 ms) on the appliance.
2. Backlog after an outage: N one-minute recordings sealed while the collector was away,
   then flushed: MB/s and recordings/s until every one is acknowledged.
3. Lines sustained by one collector: M simulated lines, each with a call in progress
   (64 kbit/s of recording pieces and an event a second), published over 4 connections for
   S seconds; the collector keeps up if it has stored what was offered by the end.
4. Streaming (issue 15): K lines, each a real ring (background syncs) and uplink streaming to
   the collector, with a call written in real time (20 ms frames) for T seconds. Audio at risk
   (captured and handed to the store, not yet held by the collector by its signed word),
   sampled every frame: p50, p99, max. Live delay, from the capture of a chunk's first sample
   to the collector's ack that holds it: p50, p99 (the daemon's 200 ms delay line comes on top).
   The process's CPU time per audio second with streaming on and off (the audio path itself
   does no more work: the stream is read and published by the uplink's thread; the audio
   path's own share is measured in bench/pipeline.py). Live listening: `collector listen`'s
   own loop (collector/listen.py, on its own database connection) follows the first line's
   call from 2 s in; for each chunk it writes out, the delay from the capture of the chunk's
   first sample to the moment it is written: p50, p99, max (what a supervisor hears, before
   the player's own buffer; the daemon's 200 ms delay line comes on top).
5. Live listening in the browser (`--browser-joins J --browser-bursts B`, `--only-browser`;
   J = 0 skips it): the console's Live page in Chromium (Playwright), one line's ring and
   uplink streaming through mosquitto to the collector, its call captured at a sound card's
   pace with tone bursts in it; the supervisor joins J times (a reason, a click on Listen
   live, Stop); for each burst the delay from its capture to its playing, as an AnalyserNode
   on the page's output hears it: p50, p99, max (the daemon's 200 ms delay line on top).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from broker import Mosquitto
from linerec.broker import Broker
from linerec.codec import RATE
from linerec.collector.config import CollectorSettings
from linerec.collector.service import Collector
from linerec.mqttapi import topic
from linerec.store.base import RecordingInfo
from linerec.store.keys import keygen, load_or_create_identity, load_private, load_public
from linerec.store.ring import RingStore
from linerec.uplink.client import Uplink, UplinkSettings
from linerec.uplink.outbox import EventOutbox


def start_collector(root: Path, port: int) -> Collector:
    settings = CollectorSettings(
        broker=Broker(host="127.0.0.1", port=port, tls=False),
        data_dir=root / "central",
        database=root / "central.db",
        key=load_private(root / "keys" / "collector.key"),
    )
    collector = Collector(settings, client_id=f"bench-collector-{time.monotonic_ns()}")
    collector.start()
    assert collector.ready.wait(10)
    return collector


def appliance(root: Path, port: int, device: str) -> tuple[RingStore, Uplink]:
    ring = RingStore(
        root / device,
        recipients=[load_public(root / "keys" / "collector.pub")],
        identity=load_or_create_identity(root / device / "identity.key"),
        device_id=device,
    )
    settings = UplinkSettings(
        broker=Broker(host="127.0.0.1", port=port, tls=False),
        device_id=device,
        collector=load_public(root / "keys" / "collector.pub"),
    )
    outbox = EventOutbox(
        root / device / "outbox", recipients=[load_public(root / "keys" / "collector.pub")]
    )
    return ring, Uplink(settings, ring, outbox)


def emit_cost(root: Path, count: int) -> tuple[float, float, float]:
    """(fsyncs per event on the emitting thread, median append in µs, writer fsyncs per
    event), appending one event every 2 ms as a busy main loop might."""
    import os
    import threading

    syncs: list[str] = []
    real = {name: getattr(os, name) for name in ("fsync", "fdatasync")}

    def counting(name: str) -> object:
        def sync(fd: int) -> None:
            syncs.append(threading.current_thread().name)
            real[name](fd)

        return sync

    outbox = EventOutbox(
        root / "emit" / "outbox", recipients=[load_public(root / "keys" / "collector.pub")]
    )
    for name in real:
        setattr(os, name, counting(name))
    try:
        times = []
        for i in range(count):
            start = time.perf_counter()
            outbox.append(
                {
                    "device": "emit",
                    "event": "callerid",
                    "line": "line1",
                    "t": i * 0.002,
                    "at": datetime.now(UTC).isoformat(),
                    "number": f"555{i:07d}",
                    "caller_name": "JOHN DOE",
                }
            )
            times.append(time.perf_counter() - start)
            time.sleep(0.002)
        outbox.close()
    finally:
        for name, function in real.items():
            setattr(os, name, function)
    main = threading.current_thread().name
    return (
        syncs.count(main) / count,
        statistics.median(times) * 1e6,
        syncs.count("store-writer") / count,
    )


def latency(root: Path, port: int, count: int) -> list[float]:
    collector = start_collector(root, port)
    _ring, uplink = appliance(root, port, "lat")
    uplink.start()
    deadline = time.monotonic() + 10
    while not uplink.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    sent: dict[int, float] = {}
    for i in range(count):
        seq = uplink.outbox.append(
            {
                "device": "lat",
                "event": "answered",
                "line": "line1",
                "t": i * 0.02,
                "at": datetime.now(UTC).isoformat(),
            }
        )
        sent[seq] = time.time()
        uplink.kick()
        time.sleep(0.02)
    deadline = time.monotonic() + 30
    while collector.store.contiguous_seq("lat") < count and time.monotonic() < deadline:
        time.sleep(0.05)
    rows = collector.store.db.execute(
        "SELECT seq, received_at FROM events WHERE device = 'lat'"
    ).fetchall()
    uplink.stop()
    collector.stop()
    return [received - sent[seq] for seq, received in rows]


def backlog(root: Path, port: int, recordings: int) -> tuple[float, float, int]:
    ring, uplink = appliance(root, port, "backlog")
    rng = np.random.default_rng(0)
    audio = (rng.normal(0, 3000, RATE * 60)).astype(np.int16)
    for _i in range(recordings):
        writer = ring.begin(
            RecordingInfo(
                device_id="backlog",
                line="line1",
                label="",
                direction="inbound",
                consent="notice",
                started_at=datetime.now(UTC),
                clock_synchronized=True,
            )
        )
        for start in range(0, len(audio), 160):
            writer.write(audio[start : start + 160])
        writer.seal(ended_by="hang-up")
    total = sum(e.size for e in ring.sealed())
    collector = start_collector(root, port)
    start = time.perf_counter()
    uplink.start()
    deadline = time.monotonic() + 300
    while ring.sealed() and time.monotonic() < deadline:
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    uplink.stop()
    collector.stop()
    return total / elapsed / 1e6, recordings / elapsed, total


def lines(root: Path, port: int, count: int, seconds: float) -> tuple[int, int, int, int]:
    collector = start_collector(root, port)
    piece = bytes(RATE)  # one second of µ-law
    digest = hashlib.sha256(piece * int(seconds)).hexdigest()
    size = len(piece) * int(seconds)
    clients = []
    for c in range(4):
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5,
            client_id=f"bench-lines-{c}",
        )
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", port)
        client.loop_start()
        clients.append(client)
    offered_pieces = offered_events = 0
    start = time.monotonic()
    for second in range(int(seconds)):
        for line in range(count):
            client = clients[line % len(clients)]
            device = f"line{line:04d}"
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = [
                ("offset", str(second * len(piece))),
                ("size", str(size)),
                ("sha256", digest),
            ]
            client.publish(
                topic(device, "upload", f"{device}-call"), piece, qos=1, properties=properties
            )
            client.publish(
                topic(device, "event"), b'{"seq": %d, "event": "tick"}' % (second + 1), qos=1
            )
            offered_pieces += 1
            offered_events += 1
        pause = start + second + 1 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    deadline = time.monotonic() + 30
    stored_events = 0
    while time.monotonic() < deadline:
        stored_events = collector.store.db.execute(
            "SELECT COUNT(*) FROM events WHERE device LIKE 'line%'"
        ).fetchone()[0]
        if stored_events >= offered_events:
            break
        time.sleep(0.2)
    stored_recordings = sum(
        1 for r in collector.store.recordings() if r["device"].startswith("line")
    )
    for client in clients:
        client.loop_stop()
        client.disconnect()
    collector.stop()
    return offered_events, stored_events, count, stored_recordings


class Heard:
    """A listener's output: when each write came, and how many samples had come by then."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, bytes]] = []

    def write(self, data: bytes) -> int:
        self.writes.append((time.monotonic(), bytes(data)))
        return len(data)

    def flush(self) -> None:
        pass


def listener_delays(heard: Heard, audio: np.ndarray, t0: float) -> list[float]:
    """Per chunk the listener wrote: seconds from the capture of its first sample to then."""
    from linerec.codec import Codec, decode, encode
    from linerec.store.format import CHUNK_AUDIO_BYTES

    per_chunk = CHUNK_AUDIO_BYTES  # µ-law: a byte a sample
    sent = decode(Codec.ULAW, encode(Codec.ULAW, audio))  # exactly what a listener hears
    delays = []
    chunk = None
    for when, data in heard.writes[1:]:  # after the WAV header: one chunk a write
        samples = np.frombuffer(data, dtype="<i2")
        if chunk is None:  # where the listener joined the call
            chunk = next(
                (
                    i
                    for i in range(len(sent) // per_chunk)
                    if np.array_equal(sent[i * per_chunk : i * per_chunk + len(samples)], samples)
                ),
                None,
            )
            if chunk is None:
                return delays
        if len(samples) == per_chunk:
            delays.append(when - (t0 + chunk * per_chunk / RATE))
        chunk += 1
    return delays


def streaming(
    root: Path, port: int, count: int, seconds: float, *, stream: bool = True
) -> tuple[list[float], list[float], float, list[float]]:
    """(seconds at risk, sampled each frame; live delays per chunk; CPU s per audio s; delays
    from capture to a listener's output, per chunk)."""
    import threading

    from linerec.collector.listen import listen
    from linerec.collector.store import CollectorStore
    from linerec.store.format import BLOCK, CHUNK_AUDIO_BYTES

    collector = start_collector(root, port)
    public = load_public(root / "keys" / "collector.pub")
    tag = "s" if stream else "n"
    appliances = []
    for n in range(count):
        device = f"{tag}{n:03d}-{time.monotonic_ns() % 100000}"
        ring = RingStore(
            root / device,
            recipients=[public],
            identity=load_or_create_identity(root / device / "identity.key"),
            device_id=device,
            background_sync=True,
        )
        settings = UplinkSettings(
            broker=Broker(host="127.0.0.1", port=port, tls=False),
            device_id=device,
            collector=public,
            stream=stream,
        )
        uplink = Uplink(settings, ring, EventOutbox(root / device / "outbox", recipients=[public]))
        uplink.start()
        appliances.append((device, ring, uplink))
    deadline = time.monotonic() + 10
    while not all(u.connected for _, _, u in appliances) and time.monotonic() < deadline:
        time.sleep(0.01)
    writers = [
        ring.begin(
            RecordingInfo(
                device_id=device,
                line="line1",
                label="",
                direction="inbound",
                consent="notice",
                started_at=datetime.now(UTC),
                clock_synchronized=True,
            )
        )
        for device, ring, _ in appliances
    ]
    audio = np.random.default_rng(1).normal(0, 3000, int(RATE * seconds)).astype(np.int16)
    at_risk: list[float] = []
    arrived: list[dict[int, float]] = [{} for _ in appliances]
    heard, hung_up = Heard(), threading.Event()
    settings = collector.settings
    listener = threading.Thread(
        target=lambda: listen(
            CollectorStore(settings.data_dir, settings.database),  # its own connection
            settings.key,
            appliances[0][0],
            writers[0].id,
            heard,  # type: ignore[arg-type]
            stop=hung_up.is_set,
        ),
        daemon=True,
    )
    cpu = time.process_time()
    t0 = time.monotonic()
    frames = len(audio) // 160
    for k in range(frames):
        pause = t0 + k * 0.02 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if k == 100 and stream:  # a supervisor joins the call 2 s in
            listener.start()
        for writer in writers:
            writer.write(audio[k * 160 : (k + 1) * 160])
        now = time.monotonic()
        written = (k + 1) * 160
        for index, ((_, _, uplink), writer) in enumerate(zip(appliances, writers, strict=True)):
            chunks = max(uplink.streams.held(writer.id) - BLOCK, 0) // BLOCK
            at_risk.append((written - chunks * CHUNK_AUDIO_BYTES) / RATE)
            for chunk in range(chunks):
                arrived[index].setdefault(chunk, now)
    cpu = (time.process_time() - cpu) / seconds
    delays = [
        when - (t0 + chunk * CHUNK_AUDIO_BYTES / RATE)
        for chunks in arrived
        for chunk, when in chunks.items()
    ]
    hung_up.set()
    if listener.is_alive():
        listener.join(10)
    listened = listener_delays(heard, audio, t0)
    for writer in writers:
        writer.seal(ended_by="hang-up")
    deadline = time.monotonic() + 60
    while any(ring.sealed() for _, ring, _ in appliances) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _, _, uplink in appliances:
        uplink.stop()
    collector.stop()
    return at_risk, delays, cpu, listened


def browser_live(joins: int, bursts: int) -> list[list[float]]:
    """Section 5: a supervisor listening live in Chromium (tests/live_browser.py), joining the
    call `joins` times from the Live page (each a new reason, a click on Listen live, a new
    join point in the stream) and stopping; per join, the delay of each of `bursts` tone
    bursts from its capture to its playing, as an AnalyserNode on the page's output hears it."""
    from playwright.sync_api import sync_playwright

    from live_browser import PITCHES, TAP, SoundCard, delays, heard, live_site

    found = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        live_site(Path(tmp)) as site,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        context = browser.new_context()
        context.add_init_script(TAP)
        page = context.new_page()
        page.set_default_timeout(15000)
        writer = site.begin()
        with SoundCard(writer) as card:
            site.log_in(page)
            site.wait_streaming(writer.id)
            for join in range(joins):
                site.listen_live(page, writer.id, f"bench {join}")
                page.wait_for_selector("#live-player[data-state='live']")
                for pitch in PITCHES[:bursts]:
                    card.burst(pitch)
                found.append(delays(heard(page, bursts, 15000), card.captured))
                page.click("#live-player button.stop")
                page.wait_for_selector("#live-player[data-state='stopped']")
        writer.seal(ended_by="hang-up")
        browser.close()
    return found


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=20)
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--stream-lines", type=int, default=4)
    parser.add_argument("--stream-seconds", type=float, default=20)
    parser.add_argument("--only-streaming", action="store_true")
    parser.add_argument("--browser-joins", type=int, default=5)
    parser.add_argument("--browser-bursts", type=int, default=6)
    parser.add_argument("--only-browser", action="store_true")
    args = parser.parse_args()
    # The line test's pieces are not real recordings: the collector says so for each; quiet.
    import logging

    logging.getLogger("linerec.collector").setLevel(logging.ERROR)
    if args.browser_joins and not args.only_streaming:
        joined = browser_live(args.browser_joins, args.browser_bursts)
        played = [d for join in joined for d in join]
        medians = " ".join(f"{statistics.median(join):.2f}" for join in joined if join)
        print(
            f"live listening in the browser (Chromium, the console's Web Audio player), "
            f"{len(joined)} joins x {args.browser_bursts} tone bursts, {len(played)} heard: "
            f"delay from capture to playing p50 {percentile(played, 0.5):.2f} s, "
            f"p99 {percentile(played, 0.99):.2f} s, max {max(played, default=float('nan')):.2f} s "
            f"(+0.2 s delay line; target <= 2 s); per join (median): {medians}; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        if args.only_browser:
            return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keygen(root / "keys")
        broker = Mosquitto(root).start()
        try:
            risk, delays, cpu_on, listened = streaming(
                root, broker.port, args.stream_lines, args.stream_seconds
            )
            _, _, cpu_off, _ = streaming(
                root, broker.port, args.stream_lines, args.stream_seconds, stream=False
            )
            print(
                f"streaming {args.stream_lines} lines for {args.stream_seconds:g} s in real time: "
                f"audio at risk (on the card only) p50 {percentile(risk, 0.5):.2f} s, "
                f"p99 {percentile(risk, 0.99):.2f} s, max {max(risk):.2f} s (target p99 <= 1 s); "
                f"live delay p50 {percentile(delays, 0.5):.2f} s, "
                f"p99 {percentile(delays, 0.99):.2f} s (+0.2 s delay line; target p99 <= 2 s); "
                f"CPU {cpu_on:.3f} s per audio second streaming, {cpu_off:.3f} s without"
            )
            print(
                f"live listening (collector/listen.py on one of them, from 2 s in): "
                f"{len(listened)} chunks written out, delay from capture p50 "
                f"{percentile(listened, 0.5):.2f} s, p99 {percentile(listened, 0.99):.2f} s, "
                f"max {max(listened, default=float('nan')):.2f} s (+0.2 s delay line; "
                f"target <= 2 s)"
            )
            if args.only_streaming:
                return
            on_loop, append_us, on_writer = emit_cost(root, args.events)
            print(
                f"event queueing, {args.events} events: {on_loop:.2f} fsyncs per event on the "
                f"main loop (was 2.00), append median {append_us:.0f} µs; the store writer "
                f"thread seals and syncs them: {on_writer:.2f} fsyncs per event"
            )
            waits = sorted(1000 * x for x in latency(root, broker.port, args.events))
            p99 = waits[min(len(waits) - 1, round(0.99 * len(waits)))]
            print(
                f"event latency, outbox to collector database, {len(waits)} events: "
                f"median {statistics.median(waits):.1f} ms, p99 {p99:.1f} ms (target p99 <= 100 ms)"
            )
            rate, per_second, total = backlog(root, broker.port, args.backlog)
            print(
                f"backlog of {args.backlog} one-minute recordings ({total / 1e6:.1f} MB): "
                f"{rate:.2f} MB/s, {per_second:.1f} recordings/s until all acknowledged"
            )
            offered, stored, count, recordings = lines(root, broker.port, args.lines, args.seconds)
            print(
                f"{count} lines with calls in progress for {args.seconds:g} s: "
                f"{stored}/{offered} events stored, {recordings}/{count} recordings complete "
                f"(target >= 500 lines)"
            )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()

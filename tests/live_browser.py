"""A call heard live in a real browser, end to end, for the console's tests and bench/uplink.py.

The appliance side is the real ring (background syncs) and uplink, streaming through a real
mosquitto to the real collector; the console is served by uvicorn over the same store. Its
audio comes from a `SoundCard`: quiet line noise written into the open recording 20 ms at a
time as the wall clock goes (a sound card's pace), with tone bursts put in on request, each
at its own pitch, whose capture time on the host's wall clock is known. In the page, `TAP`
puts an AnalyserNode on whatever the page connects to the speakers and notes when each burst
is played and at what pitch: a burst heard at `at` ms (wall clock) captured at `captured`
seconds was `at / 1000 - captured` behind the call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyotp
from playwright.sync_api import Page

from calls import wait_until
from chromium import log_in
from console_site import Clock, Server, add_user, console
from linerec.store.ring import EncryptedWriter
from streamed import StreamedSite, streamed_site

RATE = 8000
FRAME = 160  # 20 ms, as the daemon's capture reads it
BURST = 0.4  # seconds of tone: its pitch is read 80 ms into it, on a busy machine later
GAP = 0.5  # seconds of quiet at least between two bursts
PITCHES = [500.0 + 250.0 * n for n in range(13)]  # Hz: which burst was heard (<= 3.5 kHz)

# Runs in the page before its own scripts: anything connected to an AudioContext's speakers is
# connected to an AnalyserNode too, looked at every few ms; a burst's onset (wall clock, ms,
# plus the context's own output latency) and pitch go into window.heardBursts.
TAP = """
(() => {
  const heard = [];
  window.heardBursts = heard;
  window.tappedContexts = []; // each context that played something: its state is looked at
  const taps = new WeakMap();
  const connect = AudioNode.prototype.connect;
  function watch(context) {
    const tap = context.createAnalyser();
    tap.fftSize = 2048;
    tap.smoothingTimeConstant = 0;
    const wave = new Float32Array(tap.fftSize);
    const spectrum = new Float32Array(tap.frequencyBinCount);
    let onset = null; // wall-clock ms at which the burst now playing began
    let pitched = false;
    const look = () => {
      if (context.state === "closed") return;
      const now = performance.timeOrigin + performance.now();
      tap.getFloatTimeDomainData(wave);
      let peak = 0;
      for (const v of wave) peak = Math.max(peak, Math.abs(v));
      if (onset === null && peak > 0.2) {
        const latency = (context.baseLatency || 0) + (context.outputLatency || 0);
        onset = now + 1000 * latency;
        pitched = false;
      } else if (onset !== null && !pitched && now > onset + 80) {
        // the analyser's window is all tone now, and its pitch names the burst; if it is
        // quiet already, the player cut the burst short catching up (pitch null)
        tap.getFloatFrequencyData(spectrum);
        let best = 0;
        for (let i = 1; i < spectrum.length; i++) if (spectrum[i] > spectrum[best]) best = i;
        const pitch = peak > 0.2 ? (best * context.sampleRate) / tap.fftSize : null;
        heard.push({ at: onset, pitch });
        pitched = true;
      } else if (onset !== null && pitched && peak < 0.08) {
        onset = null;
      }
    };
    setInterval(look, 4);
    return tap;
  }
  AudioNode.prototype.connect = function (target, ...rest) {
    if (target instanceof AudioDestinationNode) {
      if (!taps.has(target.context)) {
        taps.set(target.context, watch(target.context));
        window.tappedContexts.push(target.context);
      }
      connect.call(this, taps.get(target.context));
    }
    return connect.call(this, target, ...rest);
  };
})();
"""


class SoundCard:
    """The appliance's capture of one call, paced by the wall clock: each 20 ms frame is
    written into the open recording when it has been captured (a late frame is written as soon
    as the thread runs again, as a sound card's buffer is drained)."""

    def __init__(self, writer: EncryptedWriter) -> None:
        self.writer = writer
        self.captured: dict[float, float] = {}  # pitch -> wall-clock time of its newest burst's
        # first sample
        self._asked: list[float] = []
        self._bursts = 0  # put in so far
        self._lock = threading.Lock()
        self._placed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._noise = np.random.default_rng(3)
        self._thread = threading.Thread(target=self._run, name="sound card", daemon=True)

    def __enter__(self) -> SoundCard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def burst(self, pitch: float) -> float:
        """A tone burst at `pitch` from the next frame on; returns when its first sample was
        captured (wall clock, s)."""
        with self._placed:
            self._asked.append(pitch)
            placed = self._bursts + len(self._asked)
            assert self._placed.wait_for(lambda: self._bursts >= placed, timeout=10)
            return self.captured[pitch]

    def _run(self) -> None:
        wall, clock = time.time(), time.monotonic()
        tone: tuple[float, int] | None = None  # (pitch, samples played of it)
        frame = quiet_until = 0
        while not self._stop.is_set():
            self._stop.wait(max(0.0, clock + (frame + 1) * FRAME / RATE - time.monotonic()))
            audio = self._noise.standard_normal(FRAME) * 150
            with self._placed:
                if tone is None and self._asked and frame >= quiet_until:
                    tone = (self._asked.pop(0), 0)
                    # quiet after it, a little longer each time: the bursts fall at different
                    # places in the store's half-second chunks
                    quiet = BURST + GAP + 0.13 * (self._bursts % 4)
                    quiet_until = frame + round(quiet * RATE / FRAME)
                    self._bursts += 1
                    self.captured[tone[0]] = wall + frame * FRAME / RATE
                    self._placed.notify_all()
            if tone is not None:
                pitch, done = tone
                n = np.arange(done, done + FRAME)
                audio += 16000 * np.sin(2 * np.pi * pitch * n / RATE)
                done += FRAME
                tone = (pitch, done) if done < BURST * RATE else None
            self.writer.write(audio.clip(-32000, 32000).astype(np.int16))
            frame += 1


@dataclass
class LiveSite(StreamedSite):
    """The streamed site with the console served over its collector's store."""

    server: Server
    totp: pyotp.TOTP

    def wait_streaming(self, recording_id: str) -> None:
        """Until the collector holds the call's header and a chunk of it (bounded wait)."""
        wait_until(
            lambda: any(
                row["id"] == recording_id and int(str(row["received"])) > 4096
                for row in self.collector.store.uploads.in_progress()
            ),
            "the call to stream to the collector",
            timeout=30,
        )

    def log_in(self, page: Page) -> None:
        log_in(page, self.server, self.totp, "sue")

    def listen_live(self, page: Page, recording_id: str, reason: str) -> None:
        """From the Live page: the call's reason, then a click on Listen live."""
        page.goto(f"{self.server.url}/live")
        row = page.locator(f"table.live tbody tr[data-id='{recording_id}']")
        row.locator("input[name=reason]").fill(reason)
        row.locator("button[type=submit]").click()
        page.wait_for_selector("#live-player")


@contextmanager
def live_site(root: Path) -> Iterator[LiveSite]:
    with streamed_site(root, client_id=f"live-{time.monotonic_ns()}") as site:
        service = console(site.collector_toml, Clock())
        totp = add_user(service, "sue", "supervisor")
        with Server(service) as server:
            yield LiveSite(
                site.root, site.broker, site.collector, site.ring, site.outbox, site.uplink,
                server, totp,
            )  # fmt: skip


def heard(page: Page, count: int, timeout_ms: float) -> list[dict[str, Any]]:
    """The bursts the page has played once it has played `count` whole (or the timeout
    passed); one the player cut short while catching up has pitch None."""
    bursts: list[dict[str, Any]] = page.evaluate(
        """([count, ms]) => new Promise((done) => {
            const deadline = performance.now() + ms;
            const look = () => {
                const pitched = window.heardBursts.filter((burst) => burst.pitch !== null);
                if (pitched.length >= count || performance.now() > deadline) {
                    return done(window.heardBursts);
                }
                setTimeout(look, 20);
            };
            look();
        })""",
        [count, timeout_ms],
    )
    return bursts


def delays(bursts: list[dict[str, Any]], captured: dict[float, float]) -> list[float]:
    """Seconds from each burst's capture to its playing, matched by pitch (a burst the player
    dropped or cut short catching up is left out, not mistaken for another)."""
    found = []
    for burst in bursts:
        if burst["pitch"] is None:
            continue
        pitch = min(captured, key=lambda p: abs(p - burst["pitch"]))
        assert abs(pitch - burst["pitch"]) < 60, (
            f"a burst at {burst['pitch']:.0f} Hz was not sent: {bursts}"
        )
        found.append(burst["at"] / 1000 - captured[pitch])
    return found

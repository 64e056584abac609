"""The simulated line: scripted calls through the real ALSA library and recording mock pins.

For each line the simulator renders its calls, writes the line audio to a raw file, and writes
an ALSA configuration whose `file` plugin reads capture from that file and writes playback to
another (`ALSA_CONFIG_PATH` points at it), so the daemon's pyalsaaudio code runs unchanged.
Pin edges are fired, on the sample clock, just before the frame they fall in is delivered.

The line also echoes what the box plays back into what it captures, one period later at
-6 dB, as a parallel tap does: a beep on the line is heard in the recording. That coupling is
why capture waits for playback here: the capture of period n needs the playback of period n-1.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linerec.codec import RATE, Samples
from linerec.hardware.audio import AlsaCapture, AlsaPlayback
from linerec.hardware.backend import Backend
from linerec.hardware.pcm import FRAME_SAMPLES, AudioCapture, AudioPlayback, AudioSettings, Frame
from linerec.hardware.pins import EdgeCallback, InputPin, OutputPin, PinFactory
from linerec.resample import Resampler, to_int16
from linerec.sim.line import RenderedLine

ECHO_GAIN = 0.5  # -6 dB from the line output back into the capture input
TAIL = 0.5  # seconds of line after the last step before a `simulate` run ends
# Seconds: the longest a paced read sleeps before it looks for `interrupt`. Longer than a
# block in real time (200 ms), so that a block costs one sleep and one wake-up, as on a card.
PACE_STEP = 0.25


class SimInputPin(InputPin):
    """An input the simulator drives; callbacks fire synchronously, like gpiozero's mock pins."""

    def __init__(self, number: int, name: str, level: bool) -> None:
        super().__init__(number, name)
        self.level = level
        self.history: list[tuple[float, bool]] = [(0.0, level)]
        self._callback: EdgeCallback | None = None

    def read(self) -> bool:
        return self.level

    def on_edge(self, callback: EdgeCallback | None) -> None:
        self._callback = callback

    def drive(self, level: bool, t: float) -> None:
        if level == self.level:
            return
        self.level = level
        self.history.append((t, level))
        if self._callback is not None:
            self._callback(level, t)


class SimOutputPin(OutputPin):
    """An output that records (time, level) on the simulated clock."""

    def __init__(self, number: int, name: str, clock: SimClock) -> None:
        super().__init__(number, name)
        self._clock = clock
        self.level = False
        self.history: list[tuple[float, bool]] = []

    def write(self, level: bool) -> None:
        self.level = level
        self.history.append((self._clock.now, level))


class SimClock:
    """The sample clock: the end of the latest frame captured on any simulated line."""

    def __init__(self) -> None:
        self.now = 0.0

    def advance(self, t: float) -> None:
        # No lock: a racing update between two lines can only leave the clock one frame behind.
        if t > self.now:
            self.now = t


class SimPinFactory(PinFactory):
    def __init__(self, clock: SimClock, initial_levels: dict[int, bool]) -> None:
        super().__init__()
        self._clock = clock
        self._initial = initial_levels
        self.inputs: dict[int, SimInputPin] = {}
        self.outputs: dict[int, SimOutputPin] = {}

    def _make_input(self, number: int, name: str, pull_up: bool) -> InputPin:
        pin = SimInputPin(number, name, self._initial.get(number, pull_up))
        self.inputs[number] = pin
        return pin

    def _make_output(self, number: int, name: str) -> OutputPin:
        pin = SimOutputPin(number, name, self._clock)
        self.outputs[number] = pin
        return pin

    def drive(self, number: int, level: bool, t: float) -> None:
        pin = self.inputs.get(number)
        if pin is None:  # nobody listens to this pin (yet): remember the level for later
            self._initial[number] = level
        else:
            pin.drive(level, t)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimLineSetup:
    """One line as the simulator needs it: its script and where its pins are."""

    name: str
    rendered: RenderedLine
    hook_pin: int
    hook_active_low: bool
    ring_pin: int
    ring_active_low: bool
    button_pin: int | None = None  # pressed pulls it low


class _LineCoupling:
    """What the box has played to a line, so capture can hear it one period later."""

    def __init__(self) -> None:
        self._frames: dict[int, Samples] = {0: np.zeros(FRAME_SAMPLES, dtype=np.int16)}
        self._written = 1  # the playback prefill period
        self._cond = threading.Condition()
        self.closed = False

    def played(self, samples: Samples) -> None:
        with self._cond:
            self._frames[self._written] = samples
            self._written += 1
            self._cond.notify_all()

    def echo_of(self, index: int) -> Samples | None:
        """The playback period `index`, waiting for it; None once the line is closed."""
        with self._cond:
            while self._written <= index and not self.closed:
                self._cond.wait(0.5)
            for old in [k for k in self._frames if k < index - 2]:
                del self._frames[old]
            return self._frames.get(index)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class ScriptedCapture(AudioCapture):
    """Real ALSA capture of the line file, plus the script's edges, faults and echo."""

    def __init__(
        self,
        inner: AlsaCapture,
        setup: SimLineSetup,
        pins: SimPinFactory,
        clock: SimClock,
        coupling: _LineCoupling | None,
        speed: float,
    ) -> None:
        self._inner = inner
        self._setup = setup
        self._pins = pins
        self._clock = clock
        self._coupling = coupling
        self.waits_for_playback = coupling is not None
        self._speed = speed
        # A hook edge at time 0 is the line's state at start (the pin's initial level).
        self._edges = [e for e in setup.rendered.edges if e.t > 0 or e.signal != "hook"]
        self._faults = list(setup.rendered.faults)
        self._position = 0  # samples of line time so far, delivered or lost
        self._delivered = 0  # frames delivered
        self._wall_start: float | None = None
        self._closed = threading.Event()
        self.overruns = 0

    def read(self) -> Frame:
        frame = self._next()
        self._pace(frame.t)
        return frame

    def read_frames(self, count: int) -> list[Frame]:
        """As a card read in blocks: one wait, until the last of them has been captured."""
        if self._coupling is not None:  # the echo: each period waits for the one played before
            return [self.read()]
        frames = [self._next()]
        # A fault stops the block short: the frames before it are delivered first.
        while len(frames) < count and not (
            self._faults and self._faults[0].t <= self._position / RATE
        ):
            frames.append(self._next())
        self._pace(frames[-1].t)
        return frames

    def _next(self) -> Frame:
        lost = 0
        while self._faults and self._faults[0].t <= self._position / RATE:  # rare: a fault is due
            fault = self._faults.pop(0)
            if fault.kind == "stall":
                self._closed.wait()  # a capture that hangs until the daemon gives up on it
                raise OSError("simulated capture stalled and was closed")
            for _ in range(round(fault.seconds * RATE / FRAME_SAMPLES)):
                self._inner.read()  # the device lost these periods
                lost += FRAME_SAMPLES
            self.overruns += 1
        self._position += lost
        frame = self._inner.read()
        t = self._position / RATE
        samples = frame.samples
        if self._coupling is not None:
            echo = self._coupling.echo_of(self._delivered)
            if echo is not None:
                samples = to_int16(samples + ECHO_GAIN * echo.astype(np.float64))
        end = t + len(samples) / RATE
        while self._edges and self._edges[0].t < end:
            edge = self._edges.pop(0)
            self._fire(edge.signal, edge.active, edge.t)
        self._position += len(samples)
        self._delivered += 1
        self._clock.advance(end)
        if t == frame.t and lost == frame.lost and samples is frame.samples:
            return frame  # the common case: nothing to change, no new object
        return Frame(samples=samples, t=t, lost=lost)

    def _fire(self, signal: str, active: bool, t: float) -> None:
        setup = self._setup
        if signal == "hook":
            self._pins.drive(setup.hook_pin, active != setup.hook_active_low, t)
        elif signal == "ring":
            self._pins.drive(setup.ring_pin, active != setup.ring_active_low, t)
        elif setup.button_pin is not None:
            self._pins.drive(setup.button_pin, not active, t)

    def _pace(self, t: float) -> None:
        if self._speed <= 0:
            return
        now = time.monotonic()
        if self._wall_start is None:
            self._wall_start = now - t / self._speed
        delay = self._wall_start + (t + FRAME_SAMPLES / RATE) / self._speed - now
        # A plain sleep, as a card's blocking read costs next to nothing while it waits (an
        # Event's timed wait costs the benches' paced figure tens of µs a period); in short
        # steps, so that `interrupt` still ends a wait soon.
        while delay > 0 and not self._closed.is_set():
            time.sleep(min(delay, PACE_STEP))
            delay = self._wall_start + (t + FRAME_SAMPLES / RATE) / self._speed - time.monotonic()

    def interrupt(self) -> None:
        self._closed.set()
        if self._coupling:
            self._coupling.close()

    def close(self) -> None:
        self.interrupt()
        self._inner.close()


class CoupledPlayback(AudioPlayback):
    """Real ALSA playback into the line-output file, echoed back to capture."""

    def __init__(self, inner: AlsaPlayback, coupling: _LineCoupling) -> None:
        self._inner = inner
        self._coupling = coupling

    @property
    def underruns(self) -> int:  # type: ignore[override]
        return self._inner.underruns

    def write(self, samples: Samples) -> None:
        self._inner.write(samples)
        for start in range(0, len(samples), FRAME_SAMPLES):  # capture hears it period by period
            self._coupling.played(samples[start : start + FRAME_SAMPLES])

    def close(self) -> None:
        self._inner.close()


class SimBackend(Backend):
    """Simulated lines in `workdir`: `<line>.line-in.raw` (what the line carries) and
    `<line>.line-out.raw` (what the box played to the line), both at the line's device rate."""

    def __init__(
        self,
        lines: list[SimLineSetup],
        settings: list[AudioSettings],
        workdir: Path,
        speed: float,
        *,
        echo: bool = True,
    ) -> None:
        self.workdir = workdir = workdir.resolve()  # ALSA resolves paths from its own cwd
        self.speed = speed
        self.sim_clock = SimClock()
        initial: dict[int, bool] = {}
        for line in lines:
            initial[line.hook_pin] = line.hook_active_low  # on hook: inactive
            initial[line.ring_pin] = line.ring_active_low
            for edge in line.rendered.edges:
                if edge.t <= 0 and edge.signal == "hook":  # off hook already when we start
                    initial[line.hook_pin] = edge.active != line.hook_active_low
        self.pins: SimPinFactory = SimPinFactory(self.sim_clock, initial)
        self._lines = {line.name: line for line in lines}
        self._settings = {s.capture_device: s for s in settings}
        # Without echo (benchmarks) capture runs freely ahead of the main loop, as on a Pi.
        self._couplings = {line.name: _LineCoupling() for line in lines} if echo else {}
        self.captures: dict[str, ScriptedCapture] = {}
        # It sits in the store directory and holds the line's audio: private like the rest.
        workdir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o700)
        entries = []
        for line, setting in zip(lines, settings, strict=True):
            self._write_line_audio(line, setting)
            entries.append(
                _alsa_entries(line.name, setting, self.line_in(line.name), self.line_out(line.name))
            )
        config = workdir / "asound.conf"
        config.write_text("# written by linerec's simulated line\n" + "".join(entries))
        config.chmod(0o600)
        os.environ["ALSA_CONFIG_PATH"] = str(config)

    @staticmethod
    def device_names(line: str) -> tuple[str, str]:
        return f"linerec_sim_{line}_in", f"linerec_sim_{line}_out"

    def line_in(self, line: str) -> Path:
        return self.workdir / f"{line}.line-in.raw"

    def line_out(self, line: str) -> Path:
        return self.workdir / f"{line}.line-out.raw"

    def clock(self) -> float:
        return self.sim_clock.now

    def script_end(self, line: str) -> float:
        """When the last step of the line's script ends, in line time."""
        return self._lines[line].rendered.end

    def open_capture(self, settings: AudioSettings) -> AudioCapture:
        name = self._line_of(settings.capture_device)
        capture = ScriptedCapture(
            AlsaCapture(settings, clock=None),
            self._lines[name],
            self.pins,
            self.sim_clock,
            self._couplings.get(name),
            self.speed,
        )
        self.captures[name] = capture
        return capture

    def open_playback(self, settings: AudioSettings) -> AudioPlayback:
        coupling = self._couplings.get(self._line_of(settings.capture_device))
        playback = AlsaPlayback(settings, restartable=False)  # the file keeps what it was given
        return CoupledPlayback(playback, coupling) if coupling else playback

    def close(self) -> None:
        for capture in self.captures.values():
            capture.close()
        super().close()

    def _line_of(self, device: str) -> str:
        for name in self._lines:
            if device == self.device_names(name)[0]:
                return name
        raise KeyError(f"no simulated line has capture device {device!r}")

    def _write_line_audio(self, line: SimLineSetup, settings: AudioSettings) -> None:
        resampler = Resampler(RATE, settings.rate)
        with open(self.line_in(line.name), "wb") as file:
            for block in line.rendered.blocks():
                out = block if resampler.passthrough else to_int16(resampler.process(block))
                if settings.channels > 1:
                    out = np.repeat(out, settings.channels)
                file.write(out.astype("<i2", copy=False).tobytes())
        self.line_in(line.name).chmod(0o600)
        self.line_out(line.name).unlink(missing_ok=True)


def _alsa_entries(line: str, settings: AudioSettings, line_in: Path, line_out: Path) -> str:
    capture, playback = SimBackend.device_names(line)
    # The slave is named inline: ALSA_CONFIG_PATH replaces the global config, so there is no
    # "null" PCM to refer to by name.
    return (
        f'pcm.{capture} {{\n  type file\n  slave.pcm {{ type null }}\n  file "/dev/null"\n'
        f'  infile "{line_in}"\n  format "raw"\n}}\n'
        f"pcm.{playback} {{\n  type file\n  slave.pcm {{ type null }}\n"
        f'  file "{line_out}"\n  format "raw"\n}}\n'
    )

"""`linerec selftest`: checks a box's wiring and says in plain words what is wrong.

For the technician on site, before the box is left to record: each line's sound card opens
at the configured rate and delivers audio; the hook and ring sense inputs read sensible
levels; each LED lights in turn (the technician watches); and, with `--loopback` (the sound
card's output tied to its input, or the line coupling echoing it), a 1 kHz tone played out
is heard back at the right level. It only reads and lights things: nothing is recorded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from linerec.codec import RATE
from linerec.config import Config, LineConfig
from linerec.errors import HardwareError
from linerec.hardware.backend import Backend
from linerec.hardware.pcm import FRAME_SAMPLES, AudioCapture, AudioPlayback
from linerec.hardware.talk import TalkSwitch

LISTEN_S = 1.0  # audio read per line to judge the input
TONE_HZ = 1000.0
TONE_DBFS = -12.0
TONE_S = 0.5
LOOPBACK_MIN_DBFS = -40.0  # a tone heard back weaker than this: the loop is not closed
LATENCY_S = 0.3  # a real sound card's output-to-input delay is unknown: listen this much longer
CLIP = 32000


@dataclass(frozen=True, slots=True)
class Check:
    """One thing checked: what, whether it passed, and what the technician should know."""

    name: str
    ok: bool
    detail: str


def dbfs(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64))))) if len(samples) else 0.0
    return 20 * math.log10(rms / 32768) if rms > 0 else -math.inf


def tone_dbfs(samples: np.ndarray, hz: float) -> float:
    """Level of one frequency in `samples` (a single DFT bin, Hann-windowed), as a sine's dBFS."""
    if not len(samples):
        return -math.inf
    window = np.hanning(len(samples))
    t = np.arange(len(samples)) / RATE
    amplitude = 2 * abs(np.sum(samples * window * np.exp(-2j * np.pi * hz * t))) / np.sum(window)
    return 20 * math.log10(amplitude / math.sqrt(2) / 32768) if amplitude > 0 else -math.inf


def selftest(
    config: Config,
    backend: Backend,
    *,
    loopback: bool = False,
    led_seconds: float = 2.0,
    say: Callable[[str], None] = print,
    wait: Callable[[float], None] = time.sleep,
) -> list[Check]:
    """Run every check; `say` tells the technician what to watch while LEDs light."""
    # The sound cards first: if the recorder holds them, it holds the GPIO pins too, and
    # touching those (and releasing them at exit) would upset it.
    checks: list[Check] = []
    for line in config.lines:
        checks += _audio(backend, line, loopback=loopback)
    if any(BUSY_HINT in check.detail for check in checks):
        checks.append(Check("GPIO", False, "not checked: the recorder is running"))
        return checks
    for index, line in enumerate(config.lines):
        if line.hook_source == "audio":  # a USB telephone interface: no sense wires to read
            checks.append(
                Check(
                    f"{line.name} hook sense",
                    True,
                    'not wired (hook_source = "audio"): on/off hook is told from the audio',
                )
            )
            continue
        checks += _sense(backend, index, line)
    leds = [(config.hardware.status_led, "the status LED")] + [
        (line.pins.led, f"the recording LED of {line.name}") for line in config.lines
    ]
    for number, what in leds:
        pin = backend.pins.output(number, name=what)
        pin.write(True)
        say(f"LED test: {what} (GPIO {number}) should be lit now")
        wait(led_seconds)
        pin.write(False)
    checks.append(
        Check("LEDs", True, f"lit in turn: {', '.join(w for _, w in leds)}; check you saw each")
    )
    return checks


def _sense(backend: Backend, index: int, line: LineConfig) -> list[Check]:
    pins = line.pins
    hook = backend.pins.input(pins.hook, name=f"line[{index}] hook sense")
    ring = backend.pins.input(pins.ring, name=f"line[{index}] ring sense")
    off_hook = hook.read() != pins.hook_active_low
    ringing = ring.read() != pins.ring_active_low
    if off_hook:
        hook_check = Check(
            f"{line.name} hook sense",
            False,
            f"GPIO {pins.hook} reads off hook: either a phone on the line is off hook (hang it "
            "up and run again), or no line voltage reaches the board (check the line cord "
            "and the TIP/RING terminals)",
        )
    else:
        hook_check = Check(
            f"{line.name} hook sense", True, f"GPIO {pins.hook}: on hook, line voltage present"
        )
    if ringing:
        ring_check = Check(
            f"{line.name} ring sense",
            False,
            f"GPIO {pins.ring} reads ringing: if the line is not ringing now, the ring detector "
            "is stuck on (check its opto and the pin map's ring_active_low)",
        )
    else:
        ring_check = Check(f"{line.name} ring sense", True, f"GPIO {pins.ring}: not ringing")
    return [hook_check, ring_check]


BUSY_HINT = "if linerec is running, stop it first: systemctl stop linerec"


def explain_open_error(message: str) -> str:
    if "busy" in message.lower():  # EBUSY: the recorder itself holds the sound card
        return f"{message}; {BUSY_HINT}"
    return message


def _audio(backend: Backend, line: LineConfig, *, loopback: bool) -> list[Check]:
    audio = line.audio
    where = f"capture device {audio.capture_device!r} at {audio.rate} Hz"
    try:
        capture = backend.open_capture(audio)
    except HardwareError as exc:  # it names the config key, the device and ALSA's reason
        return [Check(f"{line.name} audio input", False, explain_open_error(str(exc)))]
    playback: AudioPlayback | None = None
    try:
        try:
            playback = backend.open_playback(audio)
        except HardwareError as exc:
            return [Check(f"{line.name} audio output", False, explain_open_error(str(exc)))]
        # On the linerec board the output reaches the input through U3 and the transformer's
        # winding, so --loopback then needs no cable: close the talk switch while listening.
        talk = TalkSwitch(
            backend.pins.output(line.pins.talk, name=f"{line.name} talk switch")
            if loopback and line.pins.talk is not None
            else None
        )
        talk.update(loopback, 0.0)
        try:
            return _listen(capture, playback, line, where, loopback=loopback)
        finally:
            talk.open()
    finally:
        capture.close()
        if playback is not None:
            playback.close()


def _listen(
    capture: AudioCapture, playback: AudioPlayback, line: LineConfig, where: str, *, loopback: bool
) -> list[Check]:
    frames = round(LISTEN_S * RATE / FRAME_SAMPLES)
    tone_frames = round(TONE_S * RATE / FRAME_SAMPLES) if loopback else 0
    late_frames = round(LATENCY_S * RATE / FRAME_SAMPLES) if loopback else 0
    t = np.arange(tone_frames * FRAME_SAMPLES) / RATE
    amplitude = 32768 * 10 ** (TONE_DBFS / 20) * math.sqrt(2)
    tone = (amplitude * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
    silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    quiet: list[np.ndarray] = []
    heard: list[np.ndarray] = []
    lost = 0
    for n in range(frames + tone_frames + late_frames):
        frame = capture.read()
        lost += frame.lost
        (heard if frames <= n else quiet).append(frame.samples)
        k = n + 1 - frames  # what is played now is heard one period later at the earliest
        playback.write(
            tone[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES] if 0 <= k < tone_frames else silence
        )
    idle = np.concatenate(quiet)
    level = dbfs(idle)
    name = f"{line.name} audio input"
    checks = []
    if not np.any(idle):
        checks.append(
            Check(
                name,
                False,
                f"{where}: digital silence (every sample zero): is the sound card's input "
                "connected to the board, and is its capture switch on (alsamixer)?",
            )
        )
    elif int(np.abs(idle).max()) >= CLIP:
        checks.append(
            Check(name, False, f"{where}: the input clips: turn the capture gain down (alsamixer)")
        )
    else:
        checks.append(Check(name, True, f"{where}: audio arrives, idle level {level:.1f} dBFS"))
    if lost:
        checks.append(
            Check(
                f"{line.name} audio timing",
                False,
                f"{where}: {lost} samples lost to overruns in {LISTEN_S:.0f} s: the box is "
                "too busy or the period too short",
            )
        )
    if loopback:
        after = np.concatenate(heard).astype(np.float64)
        back = max(  # where in the window the tone came back is the sound card's latency
            tone_dbfs(after[start : start + len(tone)], TONE_HZ)
            for start in range(0, late_frames * FRAME_SAMPLES + 1, FRAME_SAMPLES)
        )
        expected = f"{TONE_HZ:.0f} Hz played at {TONE_DBFS:.0f} dBFS, heard at {back:.1f} dBFS"
        if back < LOOPBACK_MIN_DBFS:
            device = f"playback device {line.audio.playback_device!r}"
            hint = (
                f"are the board's J4 and J3 plugged into the sound card's output and input "
                f"({device}), and does the talk switch U3 close (GPIO {line.pins.talk})?"
                if line.pins.talk is not None and line.hook_source != "audio"
                else f"is the sound card's output tied to its input ({device})?"
            )
            checks.append(
                Check(f"{line.name} loopback", False, f"{expected}: not heard back: {hint}")
            )
        else:
            checks.append(Check(f"{line.name} loopback", True, expected))
    return checks

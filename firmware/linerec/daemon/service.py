"""The daemon: threads, the main loop, the watchdog and an orderly stop.

Threads: one capture thread per line reads 20 ms periods and hands them to one bounded queue
and does nothing else. Pin edges go into the same queue, among the frames (fired by the GPIO
library's thread on a Pi, by the capture thread itself on the simulated line). The main loop
takes items in order and runs each line's pipeline, writes the line output, drives the LEDs,
and pings the systemd watchdog only while every capture thread is alive. With no audio coming
it sleeps until one of those is due (an LED's next change, the watchdog, a capture that would
count as stalled), not on a fixed beat: on a Pi each wake-up costs as much as a block.

Periods go over in blocks of `HANDOFF_FRAMES` (200 ms) while nothing on the line needs the
main loop sooner: one wake-up and one hand-over per block instead of per period. A pin edge,
a notice or beep being played, or a hook or ring level not yet settled make the line
"urgent": then every period goes over as it is read, and the line output follows capture by
one period, as without blocks. Blocks end where the line's analysis blocks end, so that the
pipeline can take a quiet one in one step. An edge goes in among the frames in time order
(the capture thread puts it there; it also wakes a capture waiting for a block), so the main
loop still sees everything in the order it happened. A line command (pause, resume,
opt-out) acts from the moment it came: if the capture thread still holds audio from before
that moment, the command is carried out right after the frame it came in.

On stop (SIGTERM) the capture threads are told to stop, what they already captured is run
through, and each line seals its recording in progress.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from linerec.call.consent import ConsentMode
from linerec.call.events import CallEvent
from linerec.call.machine import State
from linerec.codec import RATE, Samples
from linerec.config import Config, LineConfig
from linerec.daemon.callnotes import CallNotes, NotedCall, boot_id
from linerec.daemon.events import CommandDone, CommandRefused, Fault, FaultCleared, RecordingSealed
from linerec.daemon.handoff import HandoffQueue
from linerec.daemon.line import LinePipeline
from linerec.daemon.notify import Notifier
from linerec.errors import HardwareError
from linerec.hardware.backend import Backend
from linerec.hardware.leds import Led, Show
from linerec.hardware.pcm import AudioCapture, AudioPlayback, Frame
from linerec.hardware.talk import TalkSwitch
from linerec.resample import to_int16
from linerec.store.base import Store
from linerec.wav import read_mono_8k

if TYPE_CHECKING:  # commands come only through an [uplink]: MQTT is not loaded without one
    from linerec.uplink.commands import Command, Refusal

log = logging.getLogger(__name__)

QUEUE_FRAMES = 50  # per line: one second of audio between capture and the main loop
BATCH_FRAMES = 10  # frames of one line handled in one go when they are already waiting
# Periods a capture thread gathers before waking the main loop (200 ms): each wake-up of the
# two threads costs about as much CPU on a Pi as the block's analysis. The card's buffer holds
# a block with room to spare (AlsaCapture); a key is heard as soon either way, in line time.
HANDOFF_FRAMES = 10
# Seconds without a period before a capture thread counts as stuck. A busy box (or a test
# host under load) can leave a thread unscheduled for half a second; a false stall would cut
# the call into two recordings, while a card silent for 2 s is dead either way.
CAPTURE_STALL = 2.0
SUPERVISE_EVERY = 0.05  # seconds at least between watchdog/stall checks, and LED refreshes
# Seconds at most the main loop sleeps with nothing due: for the uplink's state and the
# update supervisor, which nothing wakes it for. A line's blocks wake it five times as often;
# a block late under load must not count as due (that would be a wake-up for nothing).
SUPERVISE_IDLE = 1.0
RETENTION_EVERY = 60.0  # seconds between retention sweeps
HEALTH_EVERY = 60.0  # seconds between health reports
UPLINK_GRACE = 60.0  # seconds without the broker before the status LED shows it
THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")


def _temperature() -> float | None:
    """The SoC temperature where the kernel reports one (on a Pi it does)."""
    try:
        return int(THERMAL.read_text()) / 1000
    except (OSError, ValueError):
        return None


TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


def clock_synchronized() -> bool:
    """Whether systemd-timesyncd has set the clock since boot (a Pi has no RTC)."""
    return TIMESYNC_FLAG.exists()


def load_notice(line: LineConfig) -> Samples:
    """The line's notice as 8 kHz int16, with the configured gain."""
    samples = read_mono_8k(line.notice).astype("float64")
    return to_int16(samples * 10 ** (line.notice_gain_db / 20))


@dataclass(frozen=True, slots=True)
class _Edge:
    line: int
    signal: str  # "hook" or "ring"
    level: bool
    t: float


@dataclass(frozen=True, slots=True)
class _Captured:
    line: int
    frames: tuple[Frame, ...]  # consecutive periods, oldest first


@dataclass(frozen=True, slots=True)
class _Command:
    command: Command | Refusal  # checked, or why it was refused
    line: int = -1


@dataclass(frozen=True, slots=True)
class _Report:
    event: CallEvent  # from another thread (an update under way), emitted by the main loop
    line: int = -1


@dataclass(frozen=True, slots=True)
class _CaptureFailed:
    line: int
    error: BaseException


class Daemon:
    def __init__(
        self,
        config: Config,
        backend: Backend,
        store: Store,
        *,
        emit: Callable[[CallEvent], None],
        notifier: Notifier | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        on_status_request: Callable[[], None] = lambda: None,
        on_health: Callable[[dict[str, object]], None] = lambda health: None,
        uplink_connected: Callable[[], bool] | None = None,
        key_actions: Mapping[str, Callable[[dict[str, str]], None]] | None = None,
        on_tick: Callable[[float, bool], None] = lambda now, idle: None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.store = store
        self._emit_to = emit
        self._on_status_request = on_status_request
        self._on_health = on_health
        # rekey, cert: what a command does to the box's keys (wired with the uplink);
        # update: install a signed bundle (where RAUC is set up)
        self._key_actions = dict(key_actions or {})
        self._on_tick = on_tick  # (now, every line idle): the update supervisor's
        self._uplink_connected = uplink_connected  # None: no uplink configured
        self._started = monotonic()
        self._uplink_seen = self._started  # connected last (or started): the grace counts from here
        self._last_health = float("-inf")
        self._uplink_was_connected = False
        self.notifier = notifier or Notifier({})
        self._monotonic = monotonic
        self._queue: HandoffQueue[_Edge | _Captured | _CaptureFailed | _Command | _Report] = (
            HandoffQueue(QUEUE_FRAMES * len(config.lines))
        )
        self._stopping = threading.Event()
        self.pipelines: list[LinePipeline] = []
        self._captures: list[AudioCapture] = []
        self._playbacks: list[AudioPlayback] = []
        self._threads: list[threading.Thread] = []
        self._heartbeats: list[float] = []
        # Per line: whether the main loop needs each period as it comes (see the module doc),
        # the periods gathered meanwhile, the pin edges waiting to go in among them in time
        # order, the lock under which both go into the queue, and whether a capture thread
        # is there to do that (else edges go straight in).
        self._urgent: list[bool] = []
        self._quiet: list[bool] = []  # handed over in blocks, only silence queued to play
        self._gathered: list[list[Frame]] = []
        self._edges: list[list[_Edge]] = []
        self._gather_locks: list[threading.Lock] = []
        self._capturing: list[bool] = []
        # Per line: commands that came before the main loop had the line's audio up to them,
        # with the time they came (they act from that moment, not from where the loop was).
        self._deferred: list[list[tuple[_Command, float]]] = []
        self._status_led: Led | None = None
        self._leds: list[Led] = []  # every LED, status LED first: the loop wakes for them
        self._faults: dict[str, str] = {}  # kind -> message, for the status LED
        self._last_ping = float("-inf")
        self._last_check = float("-inf")
        self._last_retention = float("-inf")
        self._stalled: set[int] = set()
        self._last_led = float("-inf")
        self.clock_start = 0.0  # the backend clock at start: event times count from here

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Claim pins, open devices, start the capture threads."""
        backend = self.backend
        self.clock_start = backend.clock()
        for _ in self.config.lines:
            self._urgent.append(True)  # until the main loop has seen the line settled
            self._quiet.append(False)
            self._gathered.append([])
            self._edges.append([])
            self._gather_locks.append(threading.Lock())
            self._capturing.append(False)
            self._deferred.append([])
        for recovered in self.store.recover():
            log.warning(
                "recovered %s, cut by a power loss after %.1f s", recovered.path, recovered.duration
            )
            self._emit(
                RecordingSealed(
                    t=self.clock_start,
                    line=str(recovered.metadata.get("line", "")),
                    id=recovered.id,
                    path=str(recovered.path),
                    duration=round(recovered.duration, 3),
                    ended_by="power-loss",
                )
            )
        notes = CallNotes(self.config.store.dir, boot_id())
        self._status_led = Led(
            backend.pins.output(self.config.hardware.status_led, name="status LED")
        )
        self._leds.append(self._status_led)
        hook_pins = []
        for index, line in enumerate(self.config.lines):
            pins = line.pins
            hook = backend.pins.input(pins.hook, name=f"line[{index}] hook sense")
            hook_pins.append(hook)
            ring = backend.pins.input(pins.ring, name=f"line[{index}] ring sense")
            led = Led(backend.pins.output(pins.led, name=f"line[{index}] recording LED"))
            self._leds.append(led)
            talk = TalkSwitch(
                None
                if pins.talk is None
                else backend.pins.output(pins.talk, name=f"line[{index}] talk switch")
            )
            pipeline = LinePipeline(
                line=line,
                device_id=self.config.device_id,
                store=self.store,
                notice=load_notice(line),
                delay=self.config.store.delay,
                led=led,
                talk=talk,
                emit=self._emit,
                wall=self._wall,
                clock_synchronized=clock_synchronized,
                # Seen from on hook: a line already off hook (a restart mid-call) is then a
                # call picked up now, so the notice plays before anything is kept.
                initial_off_hook=False,
                on_parts=functools.partial(notes.note, line.name),
            )
            self.pipelines.append(pipeline)
            hook.on_edge(self._edge_callback(index, "hook"))
            ring.on_edge(self._edge_callback(index, "ring"))
            if pins.button is not None:  # pause / opt-out push button, to ground
                button = backend.pins.input(pins.button, name=f"line[{index}] button")
                button.on_edge(self._edge_callback(index, "button"))
            try:
                self._playbacks.append(backend.open_playback(line.audio))
                self._captures.append(backend.open_capture(line.audio))
            except HardwareError as exc:
                self._fault("audio", str(exc))
                raise
        carried: dict[str, NotedCall] = {}  # the calls that go on from before a restart
        for pipeline, hook_pin in zip(self.pipelines, hook_pins, strict=True):
            level = hook_pin.read()
            if level != pipeline.config.pins.hook_active_low:
                log.warning(
                    "line %s is off hook at start: taking the call in progress", pipeline.name
                )
                call = notes.left.get(pipeline.name)
                if call is not None:
                    carried[pipeline.name] = call
                    log.warning(
                        "line %s: its parts before the restart: %s", pipeline.name, call.parts
                    )
                    paused_for = notes.paused_for(call)
                    if paused_for is not None and not call.opted_out:
                        log.warning(
                            "line %s: paused %.1f s before the restart: taken paused",
                            pipeline.name,
                            paused_for,
                        )
                    pipeline.carry(call.parts, call.direction, call.opted_out, paused_for)
                pipeline.hook_edge(level, self.clock_start)
        try:
            notes.carry_over(carried)
        except OSError as exc:
            self._fault("store", f"{notes.path}: the calls in progress not noted: {exc}")
        now = self._monotonic()
        for index, capture in enumerate(self._captures):
            self._heartbeats.append(now)
            self._capturing[index] = True
            thread = threading.Thread(
                target=self._capture_loop,
                args=(index, capture),
                name=f"capture-{index}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        self._status_led.set(Show.IDLE, self.backend.clock())

    def run(self, stop: threading.Event, *, until: float | None = None) -> None:
        """The main loop, until `stop` is set (or every line has reached time `until`)."""
        self.notifier.ready(self._status())
        log.info(
            "linerec running: %d line(s), backend %s",
            len(self.pipelines),
            self.config.hardware.backend,
        )
        while not stop.is_set():
            item = self._queue.get(timeout=self._until_due())
            if item is not None:
                self._handle(item)
            self._supervise()
            if until is not None and all(
                p.last_t >= until or i in self._stalled for i, p in enumerate(self.pipelines)
            ):
                break

    def shutdown(self) -> None:
        """Stop capturing, run through what was captured, seal, release the hardware."""
        self.notifier.stopping("sealing recordings in progress")
        self._stopping.set()
        for capture in self._captures:
            capture.interrupt()
        for thread in self._threads:
            thread.join(timeout=1.0)
            if thread.is_alive():
                log.error("%s did not stop; closing its device anyway", thread.name)
        finishing = []
        while (item := self._queue.get(timeout=0)) is not None:
            finishing.append(item)
        # What a capture thread had gathered came after everything of its line in the queue,
        # and the edges still waiting for a frame after those.
        finishing += [_Captured(i, tuple(g)) for i, g in enumerate(self._gathered) if g]
        finishing += [edge for edges in self._edges for edge in edges]
        for item in finishing:
            if not isinstance(item, _CaptureFailed):
                try:
                    self._handle(item)
                except Exception:  # sealing what we have matters more than this frame
                    log.exception("while finishing captured audio")
        for index in range(len(self._deferred)):
            self._run_deferred(index)
        for pipeline in self.pipelines:
            try:
                pipeline.shutdown()
            except Exception:  # one line's failure must not keep the others unsealed
                log.exception("line %s: could not finish its recording", pipeline.name)
        devices: list[AudioCapture | AudioPlayback] = [*self._captures, *self._playbacks]
        for device in devices:
            try:
                device.close()
            except Exception:  # closing must not keep the others open
                log.exception("closing an audio device failed")
        if self._status_led is not None:
            self._status_led.off()
        self.backend.close()
        log.info("linerec stopped")

    # -- threads ---------------------------------------------------------------------------

    def _capture_loop(self, index: int, capture: AudioCapture) -> None:
        # A capture that waits for the line output of the period before (the simulated line's
        # echo) must hand over each period, or it would wait for itself.
        # Blocks end where the line's analysis blocks end (a whole number of them, counted
        # from the first period), so that a quiet block goes through the pipeline in one step.
        analysed = self.pipelines[index].analyzer.block_frames
        block = HANDOFF_FRAMES // analysed * analysed or HANDOFF_FRAMES
        if capture.waits_for_playback:
            block = 1
        gathered, edges = self._gathered[index], self._edges[index]
        lock, urgent = self._gather_locks[index], self._urgent
        periods = 0
        while not self._stopping.is_set():
            try:
                frames = capture.read_frames(1 if urgent[index] else block - periods % block)
            except Exception as exc:
                if not self._stopping.is_set():
                    for item in self._stop_capturing(index):
                        self._put(item)
                    self._put(_CaptureFailed(index, exc))
                return
            self._heartbeats[index] = self._monotonic()
            items: list[_Captured | _Edge] = []
            with lock:
                for frame in frames:
                    # An edge goes in just before the frame it falls in (or any later one).
                    if edges and edges[0].t < frame.t + len(frame.samples) / RATE:
                        if gathered:
                            items.append(_Captured(index, tuple(gathered)))
                            gathered.clear()
                        while edges and edges[0].t < frame.t + len(frame.samples) / RATE:
                            items.append(edges.pop(0))
                    gathered.append(frame)
                periods += len(frames)
                if gathered and (periods % block == 0 or urgent[index]):
                    items.append(_Captured(index, tuple(gathered)))
                    gathered.clear()
            # Outside the lock: a full queue blocks this thread, never the main loop (which
            # takes the lock when the line looks stalled) nor the GPIO library's thread.
            # Waiting for a main loop that is behind is not a stalled card: no stall is counted
            # until the next read.
            self._heartbeats[index] = math.inf
            for item in items:
                self._put(item)
            self._heartbeats[index] = self._monotonic()

    def _stop_capturing(self, index: int) -> list[_Captured | _Edge]:
        """Line `index` gets no more frames (its capture failed or stalled): what it gathered
        and the edges waiting among them, in order; from now on its edges go straight in."""
        with self._gather_locks[index]:
            self._capturing[index] = False
            gathered, edges = self._gathered[index], self._edges[index]
            items: list[_Captured | _Edge] = [_Captured(index, tuple(gathered))] if gathered else []
            items += edges
            gathered.clear()
            edges.clear()
        return items

    def _put(self, item: _Edge | _Captured | _CaptureFailed | _Command | _Report) -> None:
        # A full queue blocks capture (the device then overruns, which is counted and marked);
        # it never drops a frame here. Keep checking for stop so shutdown cannot hang on it.
        while not self._stopping.is_set():
            if self._queue.put(item, timeout=0.1):
                return

    def _edge_callback(self, index: int, signal: str) -> Callable[[bool, float], None]:
        def on_edge(level: bool, t: float) -> None:
            # The capture thread puts the edge in among the frames, in time order, and from
            # now on hands over every period; it is woken if it waits for a block.
            edge = _Edge(index, signal, level, t)
            with self._gather_locks[index]:
                if self._capturing[index]:
                    self._urgent[index] = True
                    self._edges[index].append(edge)
                    self._captures[index].wake()
                    return
            self._put(edge)

        return on_edge

    # -- the main loop's work --------------------------------------------------------------

    def submit_command(self, command: Command | Refusal) -> None:
        """From the uplink's thread: a checked command (or why one was refused), for the loop."""
        self._put(_Command(command))

    def report(self, event: CallEvent) -> None:
        """From another thread: an event for the main loop to emit."""
        self._put(_Report(event))

    def _handle(self, item: _Edge | _Captured | _CaptureFailed | _Command | _Report) -> None:
        if isinstance(item, _Command):
            self._execute(item)
            return
        if isinstance(item, _Report):
            self._emit(item.event)
            return
        pipeline = self.pipelines[item.line]
        if isinstance(item, _Captured):
            # Frames of this line already waiting behind it (a backlog, or capture running
            # ahead) go through together: one store write and one playback write for them all.
            frames = list(item.frames)
            room = BATCH_FRAMES - len(frames)

            def wanted(next_item: _Edge | _Captured | _CaptureFailed | _Command | _Report) -> bool:
                nonlocal room
                if not isinstance(next_item, _Captured) or next_item.line != item.line:
                    return False
                room -= len(next_item.frames)
                return room >= 0

            for more in self._queue.take_while(wanted, BATCH_FRAMES):
                if isinstance(more, _Captured):
                    frames += more.frames
            out = self._frame_run(item.line, frames)
            self._playbacks[item.line].write(out)
            urgent = self._urgent[item.line] = pipeline.needs_periods()
            self._quiet[item.line] = not urgent and not pipeline.sounding
        elif isinstance(item, _Edge):
            self._urgent[item.line] = True
            if self._quiet[item.line]:  # what the edge may start must not wait behind silence
                self._quiet[item.line] = False
                self._playbacks[item.line].restart()
            if item.signal == "hook":
                pipeline.hook_edge(item.level, item.t)
            elif item.signal == "ring":
                pipeline.ring_edge(item.level, item.t)
            else:
                pipeline.button(not item.level, item.t)  # pulled up: pressed reads low
        else:
            self._run_deferred(item.line)  # no audio is coming for them to wait on
            self._fault("audio", f"line {pipeline.name}: capture failed: {item.error}")

    def _frame_run(self, index: int, frames: list[Frame]) -> Samples:
        """The line's frames through its pipeline, each deferred command carried out right
        after the frame it came in."""
        pipeline, deferred = self.pipelines[index], self._deferred[index]
        if not deferred:
            return pipeline.frame_run(frames)
        outs = []
        start = 0
        for i, frame in enumerate(frames):
            if deferred and frame.t + len(frame.samples) / RATE >= deferred[0][1]:
                outs.append(pipeline.frame_run(frames[start : i + 1]))
                start = i + 1
                while deferred and pipeline.last_t >= deferred[0][1]:
                    command, t = deferred.pop(0)
                    self._execute(command, t)
        if start < len(frames):
            outs.append(pipeline.frame_run(frames[start:]))
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def _run_deferred(self, index: int) -> None:
        """No more audio is coming for the line (stalled, failed, stopping): its deferred
        commands now, each at the time it came."""
        deferred = self._deferred[index]
        while deferred:
            command, t = deferred.pop(0)
            self._execute(command, t)

    def _execute(self, item: _Command, at: float | None = None) -> None:
        from linerec.uplink.commands import Refusal  # commands come only with an [uplink]

        t = self.backend.clock() if at is None else at
        command = item.command
        if isinstance(command, Refusal):
            self._emit(
                CommandRefused(
                    t=t,
                    line="",
                    reason=str(command),
                    counter=command.counter,
                    last_counter=command.last,
                )
            )
            return
        arguments = command.arguments
        try:
            if command.action == "status":
                self._on_status_request()
            elif command.action in ("hold", "release"):
                getattr(self.store, command.action)(arguments["id"])
            elif command.action == "delete":
                self.store.delete(arguments["id"], "command")
            elif command.action in ("rekey", "cert", "update"):
                if command.action not in self._key_actions:
                    raise ValueError(
                        "updates are not set up on this recorder (no RAUC system.conf)"
                        if command.action == "update"
                        else "this recorder has no such key to replace"
                    )
                self._key_actions[command.action](arguments)
            else:
                pipeline = next((p for p in self.pipelines if p.name == arguments["line"]), None)
                if pipeline is None:
                    raise KeyError(f"no line {arguments['line']!r}")
                index = self.pipelines.index(pipeline)
                if command.action == "consent":
                    pipeline.set_consent(ConsentMode(arguments["mode"]))
                elif (
                    at is None
                    and pipeline.last_t < t
                    and self._capturing[index]
                    and index not in self._stalled
                ):
                    # Audio before this moment is still with the capture thread: decided
                    # as before the command, once it comes (see _frame_run).
                    self._deferred[index].append((item, t))
                    return
                else:
                    pipeline.command(command.action, t)
        except (KeyError, ValueError, PermissionError, OSError) as exc:
            # accepted (its counter is spent), but it could not be done
            self._emit(
                CommandRefused(
                    t=t,
                    line="",
                    reason=f"{command.action}: {exc}",
                    counter=command.counter,
                    last_counter=command.counter,
                )
            )
            return
        self._emit(CommandDone(t=t, line="", action=command.action, counter=command.counter))

    def _until_due(self) -> float:
        """Seconds until `_supervise` has something to do: an LED changes, the watchdog or a
        periodic job is due, or a capture would count as stalled. The loop sleeps that long
        when no audio comes (a quiet line's blocks come every 200 ms), not on a fixed beat."""
        t = self.backend.clock()
        led_at = min((led.next_change(t) for led in self._leds), default=math.inf)
        # Not sooner than `_supervise` would look: a clock that stands still (the simulated
        # line's, between blocks) must not make the loop spin.
        led_due = max(led_at, self._last_led + SUPERVISE_EVERY) - t
        now = self._monotonic()
        deadlines = [self._last_retention + RETENTION_EVERY, self._last_health + HEALTH_EVERY]
        deadlines += [
            beat + CAPTURE_STALL + 0.001  # counted stalled once strictly past it
            for index, beat in enumerate(self._heartbeats)
            if index not in self._stalled
        ]
        interval = self.notifier.watchdog_interval
        if interval is not None:
            deadlines.append(self._last_ping + interval / 2)
        check_due = max(min(deadlines), self._last_check + SUPERVISE_EVERY) - now
        return min(max(min(led_due, check_due), 0.0), SUPERVISE_IDLE)

    def _supervise(self) -> None:
        # Often enough for the watchdog and the LED patterns; rarely enough to cost nothing
        # per frame.
        t = self.backend.clock()
        if t - self._last_led >= SUPERVISE_EVERY:
            self._last_led = t
            for pipeline in self.pipelines:
                pipeline.refresh_led(t)
            if self._status_led is not None:
                self._status_led.set(self._status_show(), t)
        now = self._monotonic()
        if now - self._last_check < SUPERVISE_EVERY:
            return
        self._last_check = now
        if now - self._last_retention >= RETENTION_EVERY:
            self._last_retention = now
            self._retention()
        if now - self._last_health >= HEALTH_EVERY:
            self._last_health = now
            self._on_health(self.health(now))
        stalled = {i for i, beat in enumerate(self._heartbeats) if now - beat > CAPTURE_STALL}
        for index in stalled - self._stalled:
            # No audio is coming: keep what came, sealed, rather than wait for the watchdog.
            for item in self._stop_capturing(index):
                self._handle(item)
            self._run_deferred(index)
            self.pipelines[index].interrupt("capture-stalled")
        for index in self._stalled - stalled:  # it captures again
            with self._gather_locks[index]:
                self._capturing[index] = True
        self._stalled = stalled
        if stalled:
            names = ", ".join(self.pipelines[i].name for i in sorted(stalled))
            self._fault("audio", f"capture stalled on line {names}")
        else:
            self._clear("audio")
        self._check_uplink(now)
        self._on_tick(now, all(p.machine.state is State.IDLE for p in self.pipelines))
        interval = self.notifier.watchdog_interval
        if interval is not None and not stalled and now - self._last_ping >= interval / 2:
            self.notifier.watchdog()
            self._last_ping = now

    def _check_uplink(self, now: float) -> None:
        # Brief outages are normal (a broker restart, Wi-Fi roaming); the status LED says so
        # only once the box has been cut off long enough that a technician should look.
        if self._uplink_connected is None:
            return
        if self._uplink_connected():
            if not self._uplink_was_connected:  # (re)connected: telemetry now, not in a minute
                self._last_health = float("-inf")
            self._uplink_was_connected = True
            self._uplink_seen = now
            self._clear("uplink")
            return
        self._uplink_was_connected = False
        if now - self._uplink_seen >= UPLINK_GRACE:
            url = self.config.uplink.url if self.config.uplink else "the broker"
            self._fault("uplink", f"not connected to {url} for {UPLINK_GRACE:.0f} s or more")

    def health(self, now: float) -> dict[str, object]:
        """What the collector's health view shows of this box and its lines."""
        free = None
        try:
            stats = os.statvfs(self.config.store.dir)
            free = stats.f_bavail * stats.f_frsize
        except OSError:
            pass
        fill = self.store.fill()
        return {
            "uptime": round(now - self._started, 1),
            "ring_fill": round(fill, 4) if fill is not None else None,
            "card_free_bytes": free,
            "clock_synchronized": clock_synchronized(),
            "temperature_c": _temperature(),
            "faults": sorted(self._faults),
            "lines": [p.health() for p in self.pipelines],
        }

    def _retention(self) -> None:
        try:
            self.store.enforce_retention()
        except OSError as exc:
            self._fault("store", f"retention sweep failed: {exc}")

    def _status_show(self) -> Show:
        for kind, show in (
            ("audio", Show.FAULT_AUDIO),
            ("store", Show.FAULT_STORE),
            ("uplink", Show.FAULT_UPLINK),
        ):
            if kind in self._faults:
                return show
        return Show.IDLE

    def _fault(self, kind: str, message: str) -> None:
        if self._faults.get(kind) == message:
            return  # said once, not every loop
        self._faults[kind] = message
        log.error("fault (%s): %s", kind, message)
        self._emit(Fault(t=self.backend.clock(), line="", kind=kind, message=message))

    def _clear(self, kind: str) -> None:
        if self._faults.pop(kind, None) is not None:
            log.info("fault (%s) cleared", kind)
            self._emit(FaultCleared(t=self.backend.clock(), line="", kind=kind))

    def _emit(self, event: CallEvent) -> None:
        if isinstance(event, Fault) and event.line:
            self._faults.setdefault(event.kind, event.message)
        elif isinstance(event, RecordingSealed) and event.ended_by != "store-error":
            self._clear("store")  # the store works again
        self._emit_to(event)
        self.notifier.status(self._status())

    def _status(self) -> str:
        states = ", ".join(f"{p.name} {p.machine.state.value}" for p in self.pipelines)
        faults = "; ".join(f"{k} fault" for k in self._faults)
        return f"{states}{'; ' + faults if faults else ''}" or "starting"

    def _wall(self, t: float) -> datetime:
        # Asked afresh each time: the clock may have been set by NTP since we started.
        return datetime.now(UTC) - timedelta(seconds=self.backend.clock() - t)

"""The line output while a line's periods go over in 100 ms blocks (nothing urgent on it).

On a sound card the main loop then writes a block of silence every 100 ms: the playback keeps
a block queued ahead so the device never runs dry between two, and before anything can sound
again (an edge: the notice follows it by the hook debounce) that queued silence is dropped,
so the notice starts one period behind capture as it does without blocks.

The device is the real ALSA library (the `file` plugin over a null device); what a card adds,
a queue that drains at its own pace, is modelled at the PCM boundary: `avail()` answers what
the test says is queued, as pyalsaaudio would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linerec.daemon.simulate import simulate
from linerec.hardware.audio import AlsaPlayback
from linerec.hardware.pcm import FRAME_SAMPLES, AudioSettings

BLOCK = 5 * FRAME_SAMPLES


class QueueingPcm:
    """The real PCM, with a card's queue: `queued` device frames not yet played."""

    def __init__(self, pcm: Any, buffer: int) -> None:
        self._pcm = pcm
        self._buffer = buffer
        self.queued = 0
        self.drops = 0

    def avail(self) -> int:
        return self._buffer - self.queued

    def write(self, data: bytes) -> int:
        self.queued += len(data) // 2
        return int(self._pcm.write(data))

    def drop(self) -> None:
        self.drops += 1
        self.queued = 0
        self._pcm.drop()

    def close(self) -> None:
        self._pcm.close()


@pytest.fixture
def line_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[AudioSettings, Path]:
    out = tmp_path / "out.raw"
    config = tmp_path / "asound.conf"
    config.write_text(
        f'pcm.out {{\n  type file\n  slave.pcm {{ type null }}\n  file "{out}"\n'
        '  format "raw"\n}\n'
    )
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(config))
    return AudioSettings(capture_device="out", playback_device="out", where="line[0]"), out


def _open(settings: AudioSettings, *, restartable: bool) -> tuple[AlsaPlayback, QueueingPcm]:
    playback = AlsaPlayback(settings, restartable=restartable)
    pcm = QueueingPcm(playback._pcm, FRAME_SAMPLES * AlsaPlayback.PERIODS)
    pcm.queued = FRAME_SAMPLES  # the period of silence written at open
    playback._pcm = pcm
    return playback, pcm


def test_a_quiet_block_keeps_a_block_queued_and_an_edge_drops_the_silence(
    line_out: tuple[AudioSettings, Path],
) -> None:
    settings, out = line_out
    playback, pcm = _open(settings, restartable=True)
    silence = np.zeros(BLOCK, dtype=np.int16)
    playback.write(silence)  # one period queued: more silence first, a block ahead
    assert pcm.queued == 2 * BLOCK
    pcm.queued = BLOCK + 3 * FRAME_SAMPLES  # the card played some meanwhile
    playback.write(silence)  # more than a block queued: written as it is
    assert pcm.queued == 2 * BLOCK + 3 * FRAME_SAMPLES
    pcm.queued = 0
    ones = np.ones(BLOCK, dtype=np.int16)
    playback.write(ones)  # sound (a backlog of an urgent line): never behind added silence
    playback.write(ones[:FRAME_SAMPLES])  # a single period: never padded
    assert pcm.queued == BLOCK + FRAME_SAMPLES
    playback.restart()
    assert (pcm.drops, pcm.queued) == (1, FRAME_SAMPLES)  # one period ahead again
    playback.close()
    written = np.fromfile(out, dtype="<i2")
    expected = np.concatenate(
        [
            np.zeros(FRAME_SAMPLES),  # at open
            np.zeros(BLOCK - FRAME_SAMPLES),  # added
            silence,
            silence,
            ones,
            ones[:FRAME_SAMPLES],
            np.zeros(FRAME_SAMPLES),  # after the restart
        ]
    )
    assert np.array_equal(written, expected)


def test_the_simulated_line_output_stays_aligned_with_capture(
    line_out: tuple[AudioSettings, Path],
) -> None:
    settings, out = line_out
    playback, pcm = _open(settings, restartable=False)
    playback.write(np.zeros(BLOCK, dtype=np.int16))
    playback.write(np.ones(BLOCK, dtype=np.int16))
    playback.restart()
    playback.close()
    assert pcm.drops == 0
    assert np.array_equal(
        np.fromfile(out, dtype="<i2"),
        np.concatenate([np.zeros(FRAME_SAMPLES + BLOCK), np.ones(BLOCK)]),
    )


def test_the_daemon_drops_only_silence_and_before_the_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The off-hook edge finds the line quiet (idle, its periods in blocks): it restarts the
    playback while all it has played for a while is silence, before the notice is written."""
    restarts: list[tuple[int, bool]] = []  # (samples written so far, last 0.3 s all silent)
    written: list[np.ndarray] = []
    write = AlsaPlayback.write

    def recording_write(self: AlsaPlayback, samples: np.ndarray) -> None:
        written.append(samples.copy())
        write(self, samples)

    def recording_restart(self: AlsaPlayback) -> None:
        so_far = np.concatenate(written) if written else np.zeros(0, dtype=np.int16)
        restarts.append((len(so_far), not so_far[-2400:].any()))

    monkeypatch.setattr(AlsaPlayback, "write", recording_write)
    monkeypatch.setattr(AlsaPlayback, "restart", recording_restart)
    call = tmp_path / "calls.toml"
    call.write_text(
        '[[call]]\nconsent = "notice"\n[[call.step]]\nwait = 1.0\n'
        "[[call.step]]\noff_hook = true\n[[call.step]]\nwait = 6.0\n"
        '[[call.step]]\nsay = "caller"\n[[call.step]]\non_hook = true\n'
    )
    sim = simulate(
        [call], config=None, store_dir=tmp_path / "store", emit=lambda e: None, echo=False
    )
    output = np.concatenate(written)
    assert any(e.name == "notice_started" for e in sim.events)
    assert restarts, "no edge found its line quiet"
    assert all(silent for _, silent in restarts)
    first_sound = int(np.flatnonzero(output)[0])
    assert any(at <= first_sound for at, _ in restarts)  # the notice's edge restarted first

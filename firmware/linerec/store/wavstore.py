"""A plain WAV store: each recording a G.711 (or PCM) WAV file plus a JSON sidecar.

This stands in for the encrypted ring until it lands. Even so it keeps the rules that matter
for a lost recording: audio reaches the card and is fdatasync'ed at least every second while
the call goes on, a recording is written as `<id>.wav.part` and renamed only once it is
complete and synced, and the directory entry is synced too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from linerec.codec import Codec, Samples
from linerec.store.base import RecordingInfo, RecordingWriter, SealedRecording, Store
from linerec.wav import WavWriter

RATE = 8000
SYNC_EVERY = RATE  # samples between fdatasyncs: at most one second is lost on a power cut


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write, sync, then rename into place: a reader sees the old file or the whole new one."""
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=2)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


class WavRecordingWriter(RecordingWriter):
    def __init__(
        self, store_dir: Path, recording_id: str, info: RecordingInfo, codec: Codec
    ) -> None:
        self.id = recording_id
        self.path = store_dir / f"{recording_id}.wav"
        self._part = store_dir / f"{recording_id}.wav.part"
        self._info = info
        self._codec = codec
        self._file: BinaryIO = open(self._part, "xb")  # noqa: SIM115 - closed by seal/discard
        self._wav = WavWriter(self._file, rate=RATE, codec=codec)
        self._unsynced = 0
        self._gaps: list[dict[str, Any]] = []
        self._markers: list[dict[str, Any]] = []
        _fsync_dir(store_dir)

    def write(self, samples: Samples) -> None:
        self._wav.write(samples)
        self._unsynced += len(samples)
        if self._unsynced >= SYNC_EVERY:
            self._sync()

    def mark_gap(self, samples: int, reason: str) -> None:
        at = self._wav.samples_written / RATE
        self._gaps.append({"at": round(at, 3), "seconds": samples / RATE, "reason": reason})
        self._wav.mark(f"gap {samples / RATE:.3f} s: {reason}")
        self.write(np.zeros(samples, dtype=np.int16))

    def mark(self, label: str) -> None:
        self._markers.append({"at": round(self._wav.samples_written / RATE, 3), "label": label})
        self._wav.mark(label)

    def seal(self, *, ended_by: str) -> SealedRecording:
        duration = self._wav.samples_written / RATE
        self._wav.close()
        self._sync()
        self._file.close()
        os.replace(self._part, self.path)
        metadata = {
            "id": self.id,
            "device_id": self._info.device_id,
            "line": self._info.line,
            "label": self._info.label,
            "direction": self._info.direction,
            "consent": self._info.consent,
            "started_at": self._info.started_at.isoformat(timespec="milliseconds"),
            "clock_synchronized": self._info.clock_synchronized,
            "duration": round(duration, 3),
            "codec": self._codec.value,
            "rate": RATE,
            "markers": self._markers,
            "gaps": self._gaps,
            "ended_by": ended_by,
            "audio": self.path.name,
        }
        _write_json(self.path.with_suffix(".json"), metadata)
        _fsync_dir(self.path.parent)
        return SealedRecording(id=self.id, path=self.path, duration=duration, metadata=metadata)

    def discard(self) -> None:
        self._file.close()
        self._part.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)

    def _sync(self) -> None:
        self._file.flush()
        os.fdatasync(self._file.fileno())
        self._unsynced = 0


class WavStore(Store):
    def __init__(self, directory: Path, codec: Codec = Codec.ULAW) -> None:
        self.dir = directory
        self.codec = codec
        directory.mkdir(parents=True, exist_ok=True)

    def recover(self) -> list[SealedRecording]:
        """Finish recordings a power cut left open: fix their WAV header, keep every sample that
        reached the card, and say in the sidecar that the recording was cut. Safe to repeat."""
        recovered = []
        for part in sorted(self.dir.glob("*.wav.part")):
            recording_id = part.name.removesuffix(".wav.part")
            path = self.dir / f"{recording_id}.wav"
            with open(part, "r+b") as file:
                size = file.seek(0, os.SEEK_END)
                header = 46 if self.codec is not Codec.PCM16 else 44
                width = self.codec.bytes_per_sample
                data = max(size - header, 0) // width * width
                file.truncate(header + data)
                file.seek(0)
                WavWriter(file, rate=RATE, codec=self.codec)  # rewrites the header...
                file.seek(header - 4)
                file.write(data.to_bytes(4, "little"))  # ...with the data that survived
                file.seek(4)
                file.write((header + data - 8).to_bytes(4, "little"))
                file.flush()
                os.fsync(file.fileno())
            duration = data / width / RATE
            metadata = {
                "id": recording_id,
                "duration": round(duration, 3),
                "codec": self.codec.value,
                "rate": RATE,
                "ended_by": "power-loss",
                "audio": path.name,
            }
            _write_json(path.with_suffix(".json"), metadata)
            os.replace(part, path)
            _fsync_dir(self.dir)
            recovered.append(
                SealedRecording(id=recording_id, path=path, duration=duration, metadata=metadata)
            )
        return recovered

    def begin(self, info: RecordingInfo) -> RecordingWriter:
        stamp = (
            info.started_at.strftime("%Y%m%dT%H%M%S")
            + f".{info.started_at.microsecond // 1000:03d}Z"
        )
        base = f"{stamp}-{info.line}"
        recording_id, n = base, 1
        while (self.dir / f"{recording_id}.wav").exists() or (
            self.dir / f"{recording_id}.wav.part"
        ).exists():
            n += 1
            recording_id = f"{base}-{n}"
        return WavRecordingWriter(self.dir, recording_id, info, self.codec)

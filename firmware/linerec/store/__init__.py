"""The recording store: the encrypted ring on the card.

The daemon talks to it through `Store.begin()` and the `RecordingWriter` it returns; nothing
above this interface knows how a recording is laid out on disk (docs/format.md).
"""

from linerec.store.base import RecordingInfo, RecordingWriter, SealedRecording, Store
from linerec.store.ring import RingStore

__all__ = ["RecordingInfo", "RecordingWriter", "RingStore", "SealedRecording", "Store"]

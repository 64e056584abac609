"""The recording store: where recordings are kept on the card.

The daemon talks to it through `Store.begin()` and the `RecordingWriter` it returns; nothing
above this interface knows how a recording is laid out on disk. Until the encrypted ring
lands, `WavStore` keeps each recording as a WAV file with a JSON sidecar.
"""

from linerec.store.base import RecordingInfo, RecordingWriter, SealedRecording, Store
from linerec.store.wavstore import WavStore

__all__ = ["RecordingInfo", "RecordingWriter", "SealedRecording", "Store", "WavStore"]

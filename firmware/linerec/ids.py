"""Device ids and recording ids: the one rule both sides apply at every entry point.

A device id is a topic level (`linerec/v1/<device>/...`), a directory name at the collector
(`recordings/<device>/`), a TLS certificate's common name and the mosquitto ACL's `%u`, so it
must be safe as all four: 1-63 characters (a DNS label's length), lowercase ASCII letters,
digits, '.', '_' and '-', beginning with a letter or a digit (so never '.', '..', '-x' or
'$SYS'), and not one of the site's own names. Lowercase only, so two devices cannot differ by
case alone (on a case-insensitive file system they would share a directory).

A recording id is `<device>-<seq, 8+ digits>-<UTC yyyymmddThhmmssZ>-<line>` (store/ring.py
makes them); the collector accepts an id only under the device it begins with.
"""

from __future__ import annotations

import re

DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")  # use with .match: anchored both ends
DEVICE_ID_RULE = "1-63 lowercase letters, digits, '.', '_' or '-', beginning with a letter or digit"
RESERVED = frozenset({"broker", "linerec-collector"})  # the ACL's own users (collector/enroll.py)
_RECORDING_TAIL = re.compile(r"-[0-9]{8,19}-[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z")


def is_device_id(text: str) -> bool:
    return bool(DEVICE_ID.match(text)) and text not in RESERVED


def device_id_problem(text: str) -> str:
    """'' if `text` is a device id, else why not (with the id shown safely)."""
    if text in RESERVED:
        return f"device id {shown(text)} is reserved for the site itself"
    if not DEVICE_ID.match(text):
        return f"{shown(text)} is not a device id ({DEVICE_ID_RULE})"
    return ""


def recording_id_problem(device: str, recording_id: str) -> str:
    """'' if `recording_id` is one of `device`'s recording ids, else why not."""
    if not recording_id.startswith(f"{device}-") or not _RECORDING_TAIL.match(
        recording_id, len(device)
    ):
        return (
            f"{shown(recording_id)} is not a recording id of device {device!r} "
            f"(expected {device}-<seq>-<yyyymmddThhmmssZ>-<line>)"
        )
    return ""


def device_of(recording_id: str) -> str | None:
    """The device a recording id names, or None if it is not a recording id."""
    found = _RECORDING_TAIL.search(recording_id)
    if found is None or found.start() == 0:
        return None
    device = recording_id[: found.start()]
    return device if is_device_id(device) else None


def shown(text: str, limit: int = 80) -> str:
    """`text` fit for a log line: quoted, non-printing characters (bidi overrides, newlines)
    escaped, and cut to `limit` characters with the full length said."""
    escaped = ascii(text[:limit])
    return escaped if len(text) <= limit else f"{escaped}... ({len(text)} characters)"

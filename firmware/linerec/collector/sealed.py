"""Opening an event's sealed fields with the collector's key (docs/mqtt-api.md, "Sealed fields")."""

from __future__ import annotations

from typing import Any

from linerec import jsonlimit
from linerec.mqttapi import event_envelope
from linerec.store.keys import CollectorPrivate
from linerec.store.seal import open_fields


def open_event(key: CollectorPrivate, body: dict[str, Any]) -> dict[str, Any]:
    """The event with its sealed fields opened (an event with none is returned as it is).

    KeyError if they are not sealed to this key; InvalidTag, ValueError, TypeError or
    AttributeError if anything sealed or in the clear envelope was altered; jsonlimit.TooDeep
    (a ValueError) if what is sealed nests too deeply."""
    sealed = body.get("sealed")
    if sealed is None:
        return body
    clear = {key: value for key, value in body.items() if key != "sealed"}
    fields = jsonlimit.loads(open_fields(key, sealed, event_envelope(clear)))
    if not isinstance(fields, dict):
        raise ValueError("the sealed fields are not an object")
    return {**fields, **clear}

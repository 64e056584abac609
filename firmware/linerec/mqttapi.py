"""The MQTT API, shared by the appliance's uplink and the collector (docs/mqtt-api.md).

Topics, all under `linerec/v1/<device-id>/`:

    status              retained; {"state": "online"|"offline"|"stopped", "connection": n}
    event               QoS 1; one call or health event, with the device's event sequence number
    upload/<recording>  QoS 1; a piece of a sealed recording file (user properties: offset,
                        size, sha256 of the whole file)
    stream/<recording>  QoS 1; a piece of a recording still open, as soon as the card holds it
                        (user property offset), or an empty one with `discard`: opted out
    ack                 collector -> device, QoS 1; signed: events up to a sequence number, or a
                        recording, stored and synced at the collector

Acks are JSON signed with the collector's Ed25519 key; the appliance acts only on an ack whose
signature holds and that names it.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion

from linerec import jsonlimit
from linerec.broker import Broker
from linerec.errors import LinerecError
from linerec.ids import device_id_problem, shown
from linerec.store.format import json_body

PREFIX = "linerec/v1"
SHARE = "$share/linerec-collectors"
CHUNK = 32 * 1024  # bytes of recording per upload message (well under any broker's limit)


class ApiError(LinerecError, ValueError):
    """A message that is not what the API says: names the topic and what is wrong."""


def topic(device: str, *parts: str) -> str:
    return "/".join((PREFIX, device, *parts))


def parse_topic(name: str) -> tuple[str, list[str]]:
    """(device, rest) of a linerec topic; ApiError if it is not one, or if its device level
    is not a device id (linerec.ids: no '..', '$SYS', control characters or overlong names)."""
    parts = name.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != PREFIX:
        raise ApiError(f"{shown_topic(name)}: not a {PREFIX}/<device>/... topic")
    problem = device_id_problem(parts[2])
    if problem:
        raise ApiError(f"{shown_topic(name)}: {problem}")
    return parts[2], parts[3:]


def shown_topic(name: str) -> str:
    """A topic as it may appear in a log line: escaped and of bounded length."""
    return name if name.isascii() and name.isprintable() and len(name) <= 200 else shown(name, 200)


# An event's clear envelope: what routing, ordering and acks need. Every other field of an
# event travels sealed to the collector's keys (docs/mqtt-api.md, "Sealed fields").
EVENT_ENVELOPE = ("seq", "device", "at", "t", "event", "line")


def event_envelope(body: dict[str, Any]) -> bytes:
    """The canonical JSON of an event's clear envelope: the AAD its sealed fields are bound to."""
    return json_body({key: body[key] for key in EVENT_ENVELOPE if key in body})


def sign(key: Ed25519PrivateKey, body: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    signature = key.sign(b"linerec-ack-v1" + json_body(unsigned))
    return json_body({**unsigned, "sig": base64.b64encode(signature).decode()})


def parse_payload(where: str, payload: bytes) -> Any:
    """A message's JSON; ApiError naming `where` if it is not JSON, or nests deeper than
    jsonlimit.MAX_DEPTH (named with the byte where it does: every topic's JSON is read here,
    so none is parsed to the interpreter's recursion limit on a thread that has other work)."""
    try:
        return jsonlimit.loads(payload)
    except ValueError as exc:  # bad UTF-8 or JSON, too deep, a number of 5000 digits
        raise ApiError(f"{where}: not JSON: {exc}") from exc


def verify(key: Ed25519PublicKey, data: bytes, where: str) -> dict[str, Any]:
    """The body of a signed message; ApiError naming `where` if it is malformed or forged."""
    body = parse_payload(where, data)
    if not isinstance(body, dict) or not isinstance(body.get("sig"), str):
        raise ApiError(f"{where}: not a signed object")
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    try:
        key.verify(base64.b64decode(body["sig"]), b"linerec-ack-v1" + json_body(unsigned))
    except (InvalidSignature, ValueError) as exc:
        raise ApiError(f"{where}: bad signature (not signed by the collector's key)") from exc
    return unsigned


def make_client(
    client_id: str,
    broker: Broker,
    *,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> mqtt.Client:
    """An MQTT 5 client (paho's version 2 callbacks) with TLS when the broker URL says mqtts."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    if broker.tls:
        client.tls_set(
            ca_certs=str(ca) if ca else None,
            certfile=str(cert) if cert else None,
            keyfile=str(key) if key else None,
        )
    return client

"""The fleet: what each appliance last said on its retained `status` and `health` topics
(docs/mqtt-api.md), kept by the collector for the console's fleet page.

`status` says online, offline (the broker's will) or stopped; the collector keeps the latest,
and since when the device has been in that state (the time the collector first heard it, so
a retained message read again after a restart does not move it). `health` is telemetry: the
latest is kept as it came, after its shape is checked. Beside them the page shows what the
collector itself knows: the last recording, and gaps in the device's event and recording
chains.
"""

from __future__ import annotations

import json
from typing import Any

from linerec.collector.database import Database, upsert
from linerec.mqttapi import ApiError, parse_payload

STATES = ("online", "offline", "stopped")
MAX_BYTES = 16 * 1024
MAX_LINES = 64


def parse_status(where: str, payload: bytes) -> dict[str, Any]:
    """A status message, checked; ApiError naming the topic and the field otherwise."""
    body = _json(where, payload)
    state = body.get("state")
    if state not in STATES:
        raise ApiError(f"{where}: state: one of {', '.join(STATES)} (got {str(state)[:40]!r})")
    for name in ("connection", "last_counter"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ApiError(f"{where}: {name}: must be a whole number (got {str(value)[:40]!r})")
    return body


def parse_health(where: str, payload: bytes) -> dict[str, Any]:
    body = _json(where, payload)
    lines = body.get("lines", [])
    if not isinstance(lines, list) or len(lines) > MAX_LINES:
        raise ApiError(f"{where}: lines: must be a list of at most {MAX_LINES}")
    if not all(isinstance(line, dict) for line in lines):
        raise ApiError(f"{where}: lines: each must be an object")
    faults = body.get("faults", [])
    if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
        raise ApiError(f"{where}: faults: must be a list of names")
    fill = body.get("ring_fill")
    if fill is not None and (not isinstance(fill, int | float) or isinstance(fill, bool)):
        raise ApiError(f"{where}: ring_fill: must be a number (got {str(fill)[:40]!r})")
    return body


def _json(where: str, payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_BYTES:
        raise ApiError(f"{where}: {len(payload)} bytes, over the limit of {MAX_BYTES}")
    body = parse_payload(where, payload)
    if not isinstance(body, dict):
        raise ApiError(f"{where}: must be a JSON object")
    return body


def keep_status(db: Database, device: str, body: dict[str, Any], now: float) -> None:
    row = db.execute("SELECT state, since FROM fleet_status WHERE device = ?", (device,)).fetchone()
    since = float(row[1]) if row is not None and row[0] == body["state"] else now
    db.execute(
        upsert("fleet_status", ("device", "state", "since", "body", "received_at"), ("device",)),
        (device, body["state"], since, json.dumps(body, sort_keys=True), now),
    )


def keep_health(db: Database, device: str, body: dict[str, Any], now: float) -> None:
    db.execute(
        upsert("fleet_health", ("device", "body", "received_at"), ("device",)),
        (device, json.dumps(body, sort_keys=True), now),
    )


def chain_gaps(db: Database, device: str, limit: int = 10) -> list[tuple[int, int]]:
    """Runs of recording sequence numbers not here (first, last), below the highest here."""
    seqs = [
        int(row[0])
        for row in db.execute(
            "SELECT seq FROM recordings WHERE device = ? AND seq IS NOT NULL ORDER BY seq",
            (device,),
        )
    ]
    runs: list[tuple[int, int]] = []
    expected = 1
    for seq in seqs:
        if seq > expected:
            runs.append((expected, seq - 1))
            if len(runs) >= limit:
                break
        expected = max(expected, seq + 1)
    return runs


def devices(db: Database) -> list[str]:
    rows = db.execute(
        "SELECT device FROM fleet_status UNION SELECT device FROM fleet_health "
        "UNION SELECT device FROM recordings ORDER BY 1"
    )
    return [str(row[0]) for row in rows]


def overview(db: Database, device: str) -> dict[str, Any]:
    """What the fleet page shows of one device (event gaps are added by the store)."""
    status = db.execute(
        "SELECT state, since, body, received_at FROM fleet_status WHERE device = ?", (device,)
    ).fetchone()
    health = db.execute(
        "SELECT body, received_at FROM fleet_health WHERE device = ?", (device,)
    ).fetchone()
    last = db.execute(
        "SELECT id, started_at FROM recordings WHERE device = ? "
        f"ORDER BY {db.order('started_at', True)}, {db.order('seq', True)} LIMIT 1",
        (device,),
    ).fetchone()
    body = json.loads(health[0]) if health else {}
    lines = [
        {
            "line": str(line.get("line", "?"))[:32],
            "state": str(line.get("state", "?"))[:32],
            "off_hook": bool(line.get("off_hook")),
        }
        for line in body.get("lines", [])
    ]
    return {
        "device": device,
        "state": status[0] if status else "unknown",
        "since": float(status[1]) if status else None,
        "status_at": float(status[3]) if status else None,
        "health_at": float(health[1]) if health else None,
        "lines": lines,
        "ring_fill": body.get("ring_fill"),
        "card_free_bytes": body.get("card_free_bytes"),
        "clock_synchronized": body.get("clock_synchronized"),
        "faults": [str(f)[:80] for f in body.get("faults", [])],
        "tls_cert_expires": _text(body.get("tls_cert_expires"), 40),
        "release": _release(body.get("update")),
        "last_recording": {"id": last[0], "started_at": last[1]} if last else None,
        "recording_gaps": chain_gaps(db, device),
    }


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _release(update: object) -> dict[str, str | None] | None:
    """The running release and slot (and an update pending), from a box where RAUC is set up;
    None for what the box left out."""
    if not isinstance(update, dict):
        return None
    return {
        "slot": _text(update.get("slot"), 8) or None,
        "version": _text(update.get("version"), 32) or None,
        "pending": _text(update.get("pending"), 32),
    }

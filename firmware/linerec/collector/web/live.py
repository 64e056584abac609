"""Listening live from the console (issue 15): the calls in progress, and one call's audio as
WAV while it goes on.

The audio is made by the same `listen()` as `linerec collector listen`, run in a thread of
its own and handed to the HTTP answer a write at a time, so what is heard is at most a chunk
(0.5 s) and a poll behind what the collector holds. Audited as the command line audits it:
'listen' (who, which call, why) when the audio starts, 'listen ended' (why, how long, how it
ended) when the call is sealed or discarded or the browser goes away. Nothing of it is kept:
decrypted audio lives in memory a write at a time; an opted-out call's stream simply ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from linerec.collector.accounts import Actor
from linerec.collector.listen import line_of, listen
from linerec.collector.web.permissions import Forbidden, NotFound, require
from linerec.collector.web.service import BadRequest, ConsoleService
from linerec.store.reader import IntegrityError

LISTEN_TICKET_SECONDS = 600.0  # from giving the reason to the player's first request
_STARTED = re.compile(r"-(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z-")


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenTicket:
    """A reason given for listening to one call: the player's requests carry it."""

    name: str
    call: tuple[str, str]  # (device, id)
    reason: str
    expires: float


class _Pipe:
    """What `listen()` writes, passed to the event loop serving the answer; a write after
    the browser went away is a broken pipe, which ends the listening."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.gone = threading.Event()

    def write(self, data: bytes) -> int:
        if self.gone.is_set():
            raise BrokenPipeError("the listener went away")
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, bytes(data))
        except RuntimeError as exc:  # the server's loop is closed: nobody to hear it
            raise BrokenPipeError("the console stopped") from exc
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # the server's loop is closed
            self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


class LiveListening:
    """The console's side of live listening, over the console service's store and audit."""

    def __init__(
        self, service: ConsoleService, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.service = service
        self.monotonic = monotonic
        self._tickets: dict[str, ListenTicket] = {}

    def calls(self, actor: Actor) -> list[dict[str, Any]]:
        """The calls in progress (supervisor and above): device, line, id, since when."""
        require(actor, "listen")
        with self.service.lock:
            rows = self.service.store.uploads.in_progress()
        return [
            {
                "device": str(row["device"]),
                "line": line_of(str(row["id"])),
                "id": str(row["id"]),
                "started_at": _started_at(str(row["id"])),
                "received_bytes": row["received"],
                "last_piece_at": row["touched_at"],
            }
            for row in rows
        ]

    def _call(self, actor: Actor, device: str, recording_id: str) -> tuple[str, str]:
        """(device, id) of a call in progress; only one that is streaming names a part file."""
        require(actor, "listen", recording_id[:128])
        with self.service.lock:
            rows = self.service.store.uploads.in_progress()
        if not any((row["device"], row["id"]) == (device, recording_id) for row in rows):
            self.service.record(actor, "listen refused", recording_id[:128], "no call in progress")
            raise NotFound(f"{device}/{recording_id}: no call in progress (nothing is streaming)")
        return device, recording_id

    def start(self, actor: Actor, device: str, recording_id: str, reason: str) -> str:
        """Take the reason for listening; returns the ticket the player's requests carry."""
        call = self._call(actor, device, recording_id)
        reason = _reason(reason)
        if not reason:
            self.service.record(actor, "listen refused", recording_id, "no reason given")
            raise BadRequest("say why you listen to this call (the reason is kept in the audit)")
        ticket = secrets.token_urlsafe(24)
        now = self.service.clock()
        with self.service.lock:
            self._tickets = {k: t for k, t in self._tickets.items() if t.expires > now}
            self._tickets[ticket] = ListenTicket(
                name=actor.name, call=call, reason=reason, expires=now + LISTEN_TICKET_SECONDS
            )
        return ticket

    def reason_of(
        self, actor: Actor, device: str, recording_id: str, *, ticket: str = "", reason: str = ""
    ) -> str:
        """The reason this request listens for: its ticket's (the page), or one given with it
        (a script)."""
        self._call(actor, device, recording_id)
        if ticket:
            with self.service.lock:
                held = self._tickets.get(ticket)
            if held is None or held.name != actor.name or held.call != (device, recording_id):
                raise Forbidden("listen", "the ticket is unknown, another user's or another call's")
            if held.expires < self.service.clock():
                raise BadRequest("this listening has expired: give the reason again")
            return held.reason
        reason = _reason(reason)
        if not reason:
            self.service.record(actor, "listen refused", recording_id, "no reason given")
            raise BadRequest("reason: say why you listen to this call")
        return reason

    async def audio(
        self, actor: Actor, device: str, recording_id: str, reason: str
    ) -> AsyncIterator[bytes]:
        """The call as WAV from now to its end; audited when it starts and when it ends."""
        pipe = _Pipe(asyncio.get_running_loop())
        self.service.record(actor, "listen", recording_id, reason)
        thread = threading.Thread(
            target=self._listen,
            args=(actor, device, recording_id, reason, pipe),
            name=f"listen {device}/{recording_id}",
            daemon=True,
        )
        thread.start()
        try:
            while (data := await pipe.queue.get()) is not None:
                yield data
        finally:  # the call is over, or the browser went away (cancelled here)
            pipe.gone.set()

    def _listen(
        self, actor: Actor, device: str, recording_id: str, reason: str, pipe: _Pipe
    ) -> None:
        service = self.service
        began = self.monotonic()
        ended = "stopped"
        try:
            heard = listen(
                service.store,
                service.key,
                device,
                recording_id,
                cast(BinaryIO, pipe),  # write and flush are all listen() uses
                stop=pipe.gone.is_set,
                lock=service.lock,
            )
            ended = heard.ended
        except BrokenPipeError:
            pass  # the browser went away
        except IntegrityError as exc:
            ended = f"refused: {exc}"
        finally:
            pipe.close()
            seconds = self.monotonic() - began
            said = f"{reason} ({seconds:.1f} s, {ended})"
            service.record(actor, "listen ended", recording_id, said)


def _started_at(recording_id: str) -> str:
    """When the call began, as its id says (ISO 8601, UTC); '' if the id does not say."""
    match = _STARTED.search(recording_id)
    if match is None:
        return ""
    year, month, day, hour, minute, second = match.groups()
    return f"{year}-{month}-{day}T{hour}:{minute}:{second}Z"


def _reason(text: str) -> str:
    return " ".join(text.split())[:500]

"""Who may do what: roles as sets of action names, and which recordings a listener may hear.

Every route asks `require(actor, action)` before it touches data; a refusal is a Forbidden,
which the app turns into a 403 and an audit entry in one place.
"""

from __future__ import annotations

from typing import Any

from linerec.collector.accounts import Actor

LISTENER = frozenset({"search", "view", "play"})
SUPERVISOR = LISTENER | {"review", "export", "hold", "redact", "listen"}  # listen: live
ADMIN = SUPERVISOR | {"users", "delete", "retention", "audit", "fleet"}
ROLE_ACTIONS = {"listener": LISTENER, "supervisor": SUPERVISOR, "admin": ADMIN}


class Forbidden(Exception):
    """A request outside the asker's role or grants (answered 403, audited)."""

    def __init__(self, action: str, why: str, recording: str | None = None) -> None:
        self.action = action
        self.recording = recording
        super().__init__(f"{action}: {why}")


class NotFound(LookupError):
    """No such recording at this collector (answered 404, audited)."""


def allowed(actor: Actor, action: str) -> bool:
    return action in ROLE_ACTIONS.get(actor.role, frozenset())


def require(actor: Actor, action: str, recording: str | None = None) -> None:
    if not allowed(actor, action):
        raise Forbidden(action, f"not allowed to a {actor.role}", recording)


def scope(actor: Actor) -> tuple[tuple[str, str], ...] | None:
    """What a search may return to this actor: None (everything) above a listener."""
    if actor.role != "listener":
        return None
    return tuple((grant.kind, grant.value) for grant in actor.grants)


def in_scope(actor: Actor, row: dict[str, Any]) -> bool:
    grants = scope(actor)
    if grants is None:
        return True
    for kind, value in grants:
        if kind == "label" and row.get("label") == value:
            return True
        if kind == "line":
            device, _, line = value.partition("/")
            if row.get("device") == device and line in ("*", row.get("line")):
                return True
    return False

"""Console accounts: two-factor login, lockout, server-side sessions, grants, script tokens.

Accounts are made on the server (`linerec collector user add`); there is no default account.
A login needs the password (Argon2id) and a TOTP code (RFC 6238, 30 s steps, one step either
side accepted); a step whose code was accepted once is never accepted again. Every failure
says the same thing, so a name cannot be probed; five in a row lock the account for 15
minutes. Sessions and script tokens are random; only their SHA-256 is stored, so a copy of
the database lets nobody in. The clock is injected: tests move it instead of waiting.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from linerec.collector.audit import AuditLog
from linerec.collector.database import Database

ROLES = ("listener", "supervisor", "admin")
GRANT_KINDS = ("line", "label")
LOCK_AFTER = 5  # failures in a row
LOCK_SECONDS = 15 * 60
TOTP_STEP = 30
MIN_PASSWORD = 10
TOKEN_DAYS = 90.0
FAILURE = "wrong name, password or code"

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
GRANT_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}(/[A-Za-z0-9*][A-Za-z0-9._:-]{0,63})?")

# A hash to check a password against when the name is unknown, so both take as long.
_hasher = PasswordHasher()  # argon2-cffi's defaults: Argon2id, RFC 9106 low-memory profile
_NOBODY = _hasher.hash(secrets.token_hex(16))


class AccountError(ValueError):
    """A request about an account that cannot be done (names the account and why)."""


class LoginRefused(Exception):
    """A login that failed; its message is the same whatever failed."""

    def __init__(self) -> None:
        super().__init__(FAILURE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    kind: str  # "line" (value DEVICE/LINE, or DEVICE/* for all its lines) or "label"
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who makes a request, resolved once per request from a session or a script token."""

    name: str
    role: str
    grants: tuple[Grant, ...]
    csrf: str = ""  # the session's form token ("" for a script token)
    via: str = "session"  # or "token"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewAccount:
    name: str
    role: str
    secret: str
    uri: str  # otpauth:// provisioning URI for an authenticator app


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters")
    return password


class Accounts:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        issuer: str = "linerec",
    ) -> None:
        self.db = db
        self.clock = clock
        self.issuer = issuer
        self.audit = AuditLog(db, clock)

    # -- managing accounts (the CLI, and the admin's page) ----------------------------------

    def add(self, name: str, role: str, password: str) -> NewAccount:
        if not NAME.fullmatch(name):
            raise AccountError(
                f"user name {name!r}: 1-32 of a-z 0-9 . _ -, starting with a letter or digit"
            )
        if role not in ROLES:
            raise AccountError(f"role {role!r}: must be one of {', '.join(ROLES)}")
        check_password(password)
        if self._row(name) is not None:
            raise AccountError(f"user {name!r} already exists")
        secret = pyotp.random_base32()
        self.db.execute(
            "INSERT INTO console_users (name, role, password, totp_secret, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, role, _hasher.hash(password), secret, self.clock()),
        )
        return NewAccount(name=name, role=role, secret=secret, uri=self._uri(name, secret))

    def _uri(self, name: str, secret: str) -> str:
        return pyotp.TOTP(secret, interval=TOTP_STEP).provisioning_uri(
            name=name, issuer_name=self.issuer
        )

    def users(self) -> list[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT name, role, disabled, locked_until, created_at FROM console_users ORDER BY name"
        )
        now = self.clock()
        return [
            {
                "name": name,
                "role": role,
                "disabled": bool(disabled),
                "locked": locked_until > now,
                "created_at": created_at,
                "grants": [f"{g.kind}:{g.value}" for g in self.grants(name)],
            }
            for name, role, disabled, locked_until, created_at in cursor.fetchall()
        ]

    def disable(self, name: str) -> None:
        self._existing(name)
        self.db.execute("UPDATE console_users SET disabled = 1 WHERE name = ?", (name,))
        self.end_sessions(name)

    def enable(self, name: str) -> None:
        self._existing(name)
        self.db.execute(
            "UPDATE console_users SET disabled = 0, failures = 0, locked_until = 0 WHERE name = ?",
            (name,),
        )

    def reset_totp(self, name: str) -> NewAccount:
        row = self._existing(name)
        secret = pyotp.random_base32()
        self.db.execute(
            "UPDATE console_users SET totp_secret = ?, last_step = 0 WHERE name = ?",
            (secret, name),
        )
        self.end_sessions(name)
        return NewAccount(
            name=name, role=str(row["role"]), secret=secret, uri=self._uri(name, secret)
        )

    def set_password(self, name: str, password: str) -> None:
        self._existing(name)
        check_password(password)
        self.db.execute(
            "UPDATE console_users SET password = ? WHERE name = ?", (_hasher.hash(password), name)
        )
        self.end_sessions(name)

    def grant(self, name: str, kind: str, value: str) -> None:
        self._existing(name)
        if kind not in GRANT_KINDS:
            raise AccountError(f"grant kind {kind!r}: must be one of {', '.join(GRANT_KINDS)}")
        if not GRANT_VALUE.fullmatch(value) or (kind == "line" and "/" not in value):
            raise AccountError(
                f"grant {kind} {value!r}: a line is DEVICE/LINE (or DEVICE/*), a label a word"
            )
        self.db.execute(
            "INSERT INTO console_grants (name, kind, value) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (name, kind, value),
        )

    def revoke(self, name: str, kind: str, value: str) -> None:
        self._existing(name)
        self.db.execute(
            "DELETE FROM console_grants WHERE name = ? AND kind = ? AND value = ?",
            (name, kind, value),
        )

    def grants(self, name: str) -> tuple[Grant, ...]:
        cursor = self.db.execute(
            "SELECT kind, value FROM console_grants WHERE name = ? ORDER BY kind, value", (name,)
        )
        return tuple(Grant(kind=kind, value=value) for kind, value in cursor)

    def _row(self, name: str) -> dict[str, Any] | None:
        cursor = self.db.execute("SELECT * FROM console_users WHERE name = ?", (name,))
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cursor.description], row, strict=True))

    def _existing(self, name: str) -> dict[str, Any]:
        row = self._row(name)
        if row is None:
            raise AccountError(f"no user {name!r} (see `linerec collector user list`)")
        return row

    # -- logging in -------------------------------------------------------------------------

    def login(self, name: str, password: str, code: str) -> tuple[str, Actor]:
        """A new session's token and its actor; LoginRefused (audited) otherwise."""
        now = self.clock()
        who = name[:64]
        row = self._row(name) if NAME.fullmatch(name) else None
        if row is not None and row["locked_until"] > now:
            self.audit.record(who=who, action="login refused", reason="account locked")
            raise LoginRefused()
        password_ok = False  # argon2-cffi raises rather than returning False
        with contextlib.suppress(VerificationError, InvalidHashError):
            password_ok = _hasher.verify(row["password"] if row else _NOBODY, password)
        step = self._accepted_step(row, code, now) if row is not None else None
        if row is None or not password_ok or step is None or row["disabled"]:
            self._failed(row, who, password_ok=password_ok, code_ok=step is not None)
            raise LoginRefused()
        self.db.execute(
            "UPDATE console_users SET failures = 0, last_step = ? WHERE name = ?", (step, name)
        )
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        self.db.execute(
            "INSERT INTO console_sessions (token_hash, name, csrf, created_at, last_seen) "
            "VALUES (?, ?, ?, ?, ?)",
            (_token_hash(token), name, csrf, now, now),
        )
        self.audit.record(who=name, action="login")
        return token, Actor(name=name, role=row["role"], grants=self.grants(name), csrf=csrf)

    def _accepted_step(self, row: dict[str, Any], code: str, now: float) -> int | None:
        """The time step whose code this is (this one or either neighbour), if not used yet."""
        if not re.fullmatch(r"[0-9]{6}", code):
            return None
        totp = pyotp.TOTP(row["totp_secret"], interval=TOTP_STEP)
        current = int(now // TOTP_STEP)
        for step in (current - 1, current, current + 1):
            if step > row["last_step"] and hmac.compare_digest(totp.at(step * TOTP_STEP), code):
                return step
        return None

    def _failed(
        self, row: dict[str, Any] | None, who: str, *, password_ok: bool, code_ok: bool
    ) -> None:
        if row is None:
            self.audit.record(who=who, action="login failed", reason="no such user")
            return
        if row["disabled"]:
            self.audit.record(who=who, action="login failed", reason="account disabled")
            return
        failures = int(row["failures"]) + 1
        what = "wrong password" if not password_ok else "wrong or reused code"
        if failures >= LOCK_AFTER:
            self.db.execute(
                "UPDATE console_users SET failures = 0, locked_until = ? WHERE name = ?",
                (self.clock() + LOCK_SECONDS, row["name"]),
            )
            self.audit.record(who=who, action="login failed", reason=what)
            self.audit.record(
                who=who,
                action="account locked",
                reason=f"{LOCK_AFTER} failed logins in a row: locked for {LOCK_SECONDS // 60} min",
            )
            return
        self.db.execute(
            "UPDATE console_users SET failures = ? WHERE name = ?", (failures, row["name"])
        )
        self.audit.record(who=who, action="login failed", reason=what)

    # -- sessions ---------------------------------------------------------------------------

    def session(self, token: str, idle_seconds: float) -> Actor | None:
        """The actor of a live session (its idle clock restarts); None if unknown or idle."""
        key = _token_hash(token)
        row = self.db.execute(
            "SELECT s.name, s.csrf, s.last_seen, u.role, u.disabled FROM console_sessions s "
            "JOIN console_users u ON u.name = s.name WHERE s.token_hash = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        name, csrf, last_seen, role, disabled = row
        now = self.clock()
        if disabled or now - last_seen > idle_seconds:
            self.db.execute("DELETE FROM console_sessions WHERE token_hash = ?", (key,))
            self.audit.record(
                who=name, action="session ended", reason="disabled" if disabled else "idle timeout"
            )
            return None
        self.db.execute(
            "UPDATE console_sessions SET last_seen = ? WHERE token_hash = ?", (now, key)
        )
        return Actor(name=name, role=role, grants=self.grants(name), csrf=csrf)

    def logout(self, token: str) -> None:
        row = self.db.execute(
            "SELECT name FROM console_sessions WHERE token_hash = ?", (_token_hash(token),)
        ).fetchone()
        if row is not None:
            self.db.execute(
                "DELETE FROM console_sessions WHERE token_hash = ?", (_token_hash(token),)
            )
            self.audit.record(who=row[0], action="logout")

    def end_sessions(self, name: str) -> None:
        self.db.execute("DELETE FROM console_sessions WHERE name = ?", (name,))

    # -- script tokens ----------------------------------------------------------------------

    def issue_token(self, name: str, role: str, days: float = TOKEN_DAYS) -> str:
        """A bearer token for scripts acting as `name`, limited to `role` (at most the user's)."""
        row = self._existing(name)
        if role not in ROLES:
            raise AccountError(f"role {role!r}: must be one of {', '.join(ROLES)}")
        if ROLES.index(role) > ROLES.index(row["role"]):
            raise AccountError(f"user {name!r} is a {row['role']}: cannot have a {role} token")
        token = "lrt_" + secrets.token_urlsafe(32)
        now = self.clock()
        self.db.execute(
            "INSERT INTO console_tokens (token_hash, name, role, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (_token_hash(token), name, role, now, now + days * 86400),
        )
        return token

    def token(self, token: str) -> Actor | None:
        """The actor of a script token: its role, or the user's if that is now lower."""
        row = self.db.execute(
            "SELECT t.name, t.role, t.expires_at, u.disabled, u.role FROM console_tokens t "
            "JOIN console_users u ON u.name = t.name WHERE t.token_hash = ?",
            (_token_hash(token),),
        ).fetchone()
        if row is None or row[3] or row[2] < self.clock():
            return None
        role = min(row[1], row[4], key=ROLES.index)
        return Actor(name=row[0], role=role, grants=self.grants(row[0]), via="token")

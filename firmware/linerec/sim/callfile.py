"""Scripted calls: small TOML files that say what happens on a simulated line.

A file holds one or more `[[call]]` tables; each names its line and lists `[[call.step]]`
tables that happen one after another. Every step has exactly one action key; `at = SECONDS`
on any step starts it at that time instead of right after the previous one. The format is
documented in docs/callfile.md.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from linerec.errors import LinerecError
from linerec.files import MIB, UnreadableFile, read_text
from linerec.tones import dtmf_pair

ACTIONS = (
    "ring",
    "off_hook",
    "on_hook",
    "flash",
    "wait",
    "say",
    "dtmf",
    "tone",
    "callerid",
    "press",
    "overrun",
    "stall",
)
CALLERID_FORMATS = ("mdmf", "sdmf", "dtmf")
CALLERID_STANDARDS = ("bell202", "v23")
ABSENCE = ("private", "out of area")
_OPTIONS: dict[str, dict[str, tuple[type, ...]]] = {
    "ring": {"cadence": (str,)},
    "off_hook": {"bounce_ms": (int, float)},
    "on_hook": {"bounce_ms": (int, float)},
    "flash": {},
    "wait": {"noise_dbfs": (int, float)},
    "say": {"seconds": (int, float), "level_db": (int, float)},
    "dtmf": {"tone_ms": (int, float), "gap_ms": (int, float), "level_dbfs": (int, float)},
    "tone": {"seconds": (int, float), "level_dbfs": (int, float)},
    "callerid": {
        "name": (str,),
        "datetime": (str,),
        "format": (str,),
        "standard": (str,),
        "absent": (str,),
        "alert": (bool,),
        "corrupt": (bool,),
        "level_dbfs": (int, float),
    },
    "press": {},
    "overrun": {},
    "stall": {},
}
_ACTION_TYPES: dict[str, tuple[type, ...]] = {
    "ring": (int,),
    "off_hook": (bool,),
    "on_hook": (bool,),
    "flash": (int, float),
    "wait": (int, float),
    "say": (str,),
    "dtmf": (str,),
    "tone": (int, float, list),
    "callerid": (str,),
    "press": (bool,),
    "overrun": (int, float),
    "stall": (bool,),
}
CADENCES = ("us", "uk")
MAX_FILE_BYTES = MIB
# A script lasts at most four hours of line time (per line, all its calls together): the
# simulated line writes what it carries to disk at 8 kHz (115 MB for four hours in and out).
MAX_SCRIPT_SECONDS = 4 * 3600.0
MAX_DTMF_KEYS = 1000
# Caller ID as the standards carry it: the calling number has at most 20 digits (ETSI
# EN 300 659-3, parameter 02), the name at most 15 characters in Bell 202 (Telcordia GR-30)
# and 50 in V.23 (ETSI EN 300 659-3, parameter 07), in 8-bit printable characters.
MAX_NUMBER_DIGITS = 20
MAX_NAME_CHARS = {"bell202": 15, "v23": 50}
_PRINTABLE = re.compile(r"[\x20-\x7e\xa0-\xff]*\Z")
_LINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z")  # as in the configuration
# Numbers an action's options may take: (lowest, highest). Every number is finite.
_RANGES: dict[str, tuple[float, float]] = {
    "bounce_ms": (0, 500),
    "noise_dbfs": (-120, 0),
    "seconds": (0, MAX_SCRIPT_SECONDS),
    "level_db": (-60, 40),
    "level_dbfs": (-120, 0),
    "tone_ms": (10, 10_000),
    "gap_ms": (0, 10_000),
}
MAX_TONE_SECONDS = 600.0  # one tone step (a tone is made whole in memory)
CALLERID_SECONDS = 2.0  # at most, with the alerting signal and the longest message


class CallFileError(LinerecError, ValueError):
    def __init__(self, path: Path, where: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {where}: {message}" if where else f"{path}: {message}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    action: str
    value: Any
    at: float | None
    options: dict[str, Any]
    where: str  # "call[0].step[3]", for errors found later (a missing WAV, say)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedCall:
    line: str
    consent: str | None  # the consent mode this call is meant for, if it says
    steps: tuple[Step, ...]
    source: Path
    description: str


def load_call_file(path: Path | str) -> list[ScriptedCall]:
    path = Path(path)
    try:
        data = tomllib.loads(read_text(path, limit=MAX_FILE_BYTES))
    except UnreadableFile as exc:
        message = "no such call file" if str(exc) == "no such file" else f"cannot read: {exc}"
        raise CallFileError(path, "", message) from exc
    except tomllib.TOMLDecodeError as exc:
        raise CallFileError(path, "", f"not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib recurses once per level of nesting
        raise CallFileError(path, "", "not valid: arrays or tables nested too deeply") from exc
    description = data.pop("description", "")
    if not isinstance(description, str):
        raise CallFileError(path, "description", f"must be a string (got {description!r})")
    calls = data.pop("call", None)
    if data:
        raise CallFileError(
            path, sorted(data)[0], "unknown key (expected description and [[call]])"
        )
    if not isinstance(calls, list) or not calls:
        raise CallFileError(path, "call", "needs at least one [[call]] table")
    return [_parse_call(path, i, call, description) for i, call in enumerate(calls)]


def _parse_call(path: Path, index: int, call: object, description: str) -> ScriptedCall:
    where = f"call[{index}]"
    if not isinstance(call, dict):
        raise CallFileError(path, where, "must be a table")
    call = dict(call)
    line = call.pop("line", "line1")
    if not isinstance(line, str) or not _LINE_NAME.match(line):
        raise CallFileError(
            path,
            f"{where}.line",
            f"must be a line name: 1-32 letters, digits, '_' or '-' (got {_short(line)})",
        )
    consent = call.pop("consent", None)  # checked against the consent modes by the simulator
    if consent is not None and not isinstance(consent, str):
        raise CallFileError(
            path, f"{where}.consent", f"must be a consent mode string (got {consent!r})"
        )
    steps = call.pop("step", None)
    if call:
        raise CallFileError(
            path,
            f"{where}.{sorted(call)[0]}",
            "unknown key (expected line, consent and [[call.step]])",
        )
    if not isinstance(steps, list) or not steps:
        raise CallFileError(path, where, "needs at least one [[call.step]]")
    parsed = tuple(_parse_step(path, f"{where}.step[{i}]", step) for i, step in enumerate(steps))
    elapsed = 0.0
    for step in parsed:
        elapsed = max(elapsed, step.at or 0.0) + step_seconds(step)
        if elapsed > MAX_SCRIPT_SECONDS:
            raise CallFileError(path, step.where, too_long(elapsed))
    return ScriptedCall(
        line=line, consent=consent, steps=parsed, source=path, description=description
    )


def _parse_step(path: Path, where: str, step: object) -> Step:
    if not isinstance(step, dict):
        raise CallFileError(path, where, "must be a table")
    step = dict(step)
    at = step.pop("at", None)
    if at is not None and not (_is_number(at) and 0 <= at <= MAX_SCRIPT_SECONDS):
        raise CallFileError(
            path,
            f"{where}.at",
            f"must be seconds >= 0, at most {MAX_SCRIPT_SECONDS:g} (got {_short(at)})",
        )
    actions = [key for key in step if key in ACTIONS]
    if len(actions) != 1:
        found = ", ".join(actions) if actions else "none"
        raise CallFileError(
            path, where, f"needs exactly one action of {', '.join(ACTIONS)} (found {found})"
        )
    action = actions[0]
    value = step.pop(action)
    kinds = _ACTION_TYPES[action]
    if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
        raise CallFileError(path, f"{where}.{action}", f"has the wrong type (got {_short(value)})")
    options = {}
    for key, option in step.items():
        allowed = _OPTIONS[action]
        if key not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise CallFileError(
                path, f"{where}.{key}", f"is not an option of '{action}' (options: {listed})"
            )
        if isinstance(option, bool) != (bool in allowed[key]) or not isinstance(
            option, allowed[key]
        ):
            raise CallFileError(
                path, f"{where}.{key}", f"has the wrong type (got {_short(option)})"
            )
        if key in _RANGES:
            low, high = _RANGES[key]
            if action == "tone" and key == "seconds":
                high = MAX_TONE_SECONDS
            if not low <= cast(float, option) <= high:  # false for nan; no float() of 10**400
                raise CallFileError(
                    path, f"{where}.{key}", f"must be {low:g} to {high:g} (got {_short(option)})"
                )
        options[key] = option
    _check_value(path, where, action, value, options)
    return Step(
        action=action,
        value=value,
        at=None if at is None else float(at),
        options=options,
        where=where,
    )


def _check_value(path: Path, where: str, action: str, value: Any, options: dict[str, Any]) -> None:
    key = f"{where}.{action}"
    if action in ("off_hook", "on_hook", "stall", "press") and value is not True:
        raise CallFileError(path, key, "must be true")
    if action == "ring" and not 1 <= value <= 50:
        raise CallFileError(path, key, f"must be a number of rings 1-50 (got {value})")
    if action in ("wait", "overrun") and not 0 <= value <= MAX_SCRIPT_SECONDS:
        raise CallFileError(
            path, key, f"must be seconds 0-{MAX_SCRIPT_SECONDS:g} (got {_short(value)})"
        )
    if action == "flash" and not 0 < value <= 5:
        raise CallFileError(path, key, f"must be seconds of on-hook, 0-5 (got {_short(value)})")
    if action == "say" and ("\0" in value or not 0 < len(value) <= 4096):
        raise CallFileError(
            path, key, f"must be caller, office or a WAV path (got {_short(value)})"
        )
    if action == "dtmf" and len(value) > MAX_DTMF_KEYS:
        raise CallFileError(
            path, key, f"must be at most {MAX_DTMF_KEYS} keys in one step (got {len(value)})"
        )
    if action == "dtmf":
        for position, digit in enumerate(value):
            try:
                dtmf_pair(digit)
            except ValueError:
                raise CallFileError(
                    path,
                    key,
                    f"character {position} {digit!r} is not a DTMF digit (0-9, *, #, A-D)",
                ) from None
    if action == "tone":
        frequencies = value if isinstance(value, list) else [value]
        if not frequencies or not all(
            isinstance(f, int | float) and not isinstance(f, bool) and 20 <= f <= 3900
            for f in frequencies
        ):
            raise CallFileError(
                path,
                key,
                f"must be a frequency 20-3900 Hz or a list of them (got {_short(value)})",
            )
        if "seconds" not in options:
            raise CallFileError(path, where, "'tone' needs seconds = ...")
    if action == "callerid":
        for option, allowed in (
            ("format", CALLERID_FORMATS),
            ("standard", CALLERID_STANDARDS),
            ("absent", ABSENCE),
        ):
            if option in options and options[option] not in allowed:
                raise CallFileError(
                    path, f"{where}.{option}", f"must be one of {', '.join(allowed)}"
                )
        if not value and "absent" not in options:
            raise CallFileError(path, key, 'needs a number, or absent = "private" / "out of area"')
        if not all(c in "0123456789" for c in value):
            raise CallFileError(path, key, f"must be digits (got {_short(value)})")
        if len(value) > MAX_NUMBER_DIGITS:
            raise CallFileError(
                path,
                key,
                f"must be at most {MAX_NUMBER_DIGITS} digits, as caller ID carries it "
                f"(got {len(value)})",
            )
        stamp = options.get("datetime", "")
        if stamp and not (len(stamp) == 8 and all(c in "0123456789" for c in stamp)):
            raise CallFileError(
                path, f"{where}.datetime", f"must be MMDDHHMM, 8 digits (got {_short(stamp)})"
            )
        name = options.get("name", "")
        standard = options.get("standard", "bell202")
        if not _PRINTABLE.match(name):
            raise CallFileError(
                path,
                f"{where}.name",
                f"must be printable 8-bit (Latin-1) characters, as caller ID carries them "
                f"(got {_short(name)})",
            )
        if len(name) > MAX_NAME_CHARS[standard]:
            raise CallFileError(
                path,
                f"{where}.name",
                f"must be at most {MAX_NAME_CHARS[standard]} characters in {standard} caller ID "
                f"(got {len(name)})",
            )
    if action == "ring" and options.get("cadence", "us") not in CADENCES:
        raise CallFileError(path, f"{where}.cadence", f"must be one of {', '.join(CADENCES)}")


def step_seconds(step: Step) -> float:
    """How much line time a step takes at most (a WAV that `say` names: as long as it says)."""
    action, value, options = step.action, step.value, step.options
    if action == "ring":
        return float(value) * (6.0 if options.get("cadence", "us") == "us" else 3.0)
    if action in ("off_hook", "on_hook"):
        return float(options.get("bounce_ms", 0)) / 1000
    if action in ("flash", "wait"):
        return float(value)
    if action == "say":
        return float(options.get("seconds", 0))
    if action == "dtmf":
        return len(value) * float(options.get("tone_ms", 70) + options.get("gap_ms", 70)) / 1000
    if action == "tone":
        return float(options["seconds"])
    if action == "callerid":
        return CALLERID_SECONDS
    if action == "press":
        return 0.15
    return 0.0  # overrun, stall: faults at a moment


def too_long(seconds: float) -> str:
    return (
        f"the script would last {seconds:.0f} s on its line; a script may last at most "
        f"{MAX_SCRIPT_SECONDS:g} s"
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: object) -> str:
    """A value for an error message: what it is, never a megabyte of it."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"

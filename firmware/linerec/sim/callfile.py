"""Scripted calls: small TOML files that say what happens on a simulated line.

A file holds one or more `[[call]]` tables; each names its line and lists `[[call.step]]`
tables that happen one after another. Every step has exactly one action key; `at = SECONDS`
on any step starts it at that time instead of right after the previous one. The format is
documented in docs/callfile.md.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linerec.errors import LinerecError
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
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CallFileError(path, "", "no such call file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CallFileError(path, "", f"cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CallFileError(path, "", f"not valid TOML: {exc}") from exc
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
    if not isinstance(line, str):
        raise CallFileError(path, f"{where}.line", f"must be a line name string (got {line!r})")
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
    return ScriptedCall(
        line=line, consent=consent, steps=parsed, source=path, description=description
    )


def _parse_step(path: Path, where: str, step: object) -> Step:
    if not isinstance(step, dict):
        raise CallFileError(path, where, "must be a table")
    step = dict(step)
    at = step.pop("at", None)
    if at is not None and (isinstance(at, bool) or not isinstance(at, int | float) or at < 0):
        raise CallFileError(path, f"{where}.at", f"must be seconds >= 0 (got {at!r})")
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
        raise CallFileError(path, f"{where}.{action}", f"has the wrong type (got {value!r})")
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
            raise CallFileError(path, f"{where}.{key}", f"has the wrong type (got {option!r})")
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
    if action in ("wait", "overrun") and not 0 <= value <= 36000:
        raise CallFileError(path, key, f"must be seconds 0-36000 (got {value})")
    if action == "flash" and not 0 < value <= 5:
        raise CallFileError(path, key, f"must be seconds of on-hook, 0-5 (got {value})")
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
                path, key, f"must be a frequency 20-3900 Hz or a list of them (got {value!r})"
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
        if not all(c.isdigit() for c in value):
            raise CallFileError(path, key, f"must be digits (got {value!r})")
        stamp = options.get("datetime", "")
        if stamp and not (len(stamp) == 8 and stamp.isdigit()):
            raise CallFileError(
                path, f"{where}.datetime", f"must be MMDDHHMM, 8 digits (got {stamp!r})"
            )
    if action == "ring" and options.get("cadence", "us") not in CADENCES:
        raise CallFileError(path, f"{where}.cadence", f"must be one of {', '.join(CADENCES)}")

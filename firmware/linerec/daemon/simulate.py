"""`linerec simulate`: scripted calls through the real code path, as fast as the machine goes."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linerec.call.consent import ConsentMode
from linerec.call.events import CallEvent
from linerec.config import Config, default_pinmap, load_pinmap, parse_config
from linerec.daemon.backends import open_sim_backend
from linerec.daemon.recorder import build_recorder
from linerec.errors import LinerecError
from linerec.resources import data_path
from linerec.sim.backend import TAIL, SimBackend
from linerec.sim.callfile import CallFileError, ScriptedCall, load_call_file
from linerec.store import keys
from linerec.store.private import private_dir

DEFAULT_STORE = Path("linerec-sim")
DEFAULT_CALL = "inbound.toml"
# Pins for simulated lines beyond those in the pin map (a simulation may have many lines).
_SPARE_PINS = (4, 6, 7, 8, 9, 10, 11, 13, 19, 20, 21, 26, 2, 3, 14, 15, 18)


@dataclass(frozen=True, slots=True, kw_only=True)
class Simulation:
    config: Config
    backend: SimBackend
    events: list[CallEvent]
    demo_key: Path | None  # the private key made for a simulation with no recipient


def example_call(name: str) -> Path:
    return data_path(f"calls/{name}")


def _consents_asked(calls: list[ScriptedCall]) -> dict[str, str]:
    """The consent mode each line's calls ask for (`consent = ...` in a call file)."""
    modes = tuple(mode.value for mode in ConsentMode)
    asked: dict[str, str] = {}
    for call in calls:
        if call.consent is None:
            continue
        if call.consent not in modes:
            raise CallFileError(
                call.source,
                "call.consent",
                f"must be one of {', '.join(modes)} (got {call.consent!r})",
            )
        first = asked.setdefault(call.line, call.consent)
        if first != call.consent:
            raise CallFileError(
                call.source,
                "call.consent",
                f"asks for {call.consent!r} on {call.line}, which another call runs as {first!r}",
            )
    return asked


def _check_consents(calls: list[ScriptedCall], config: Config) -> None:
    for call in calls:
        line = config.line(call.line)
        if call.consent is not None and line is not None and line.consent.value != call.consent:
            raise CallFileError(
                call.source,
                "call.consent",
                f"asks for {call.consent!r} but {config.path} sets {call.line} "
                f"to {line.consent.value!r}",
            )


def default_config(
    line_names: list[str], store_dir: Path, consents: dict[str, str] | None = None
) -> Config:
    """A configuration for the simulator alone: the lines the calls name, default policy."""
    pinmap = load_pinmap(default_pinmap())  # the same pin map as a real box
    used = {pinmap.status_led} | {
        pin
        for p in pinmap.lines
        for pin in (p.hook, p.ring, p.led, p.button, p.talk)
        if pin is not None
    }
    spare = [pin for pin in _SPARE_PINS if pin not in used]
    lines: list[dict[str, Any]] = []
    for index, name in enumerate(line_names):
        entry: dict[str, Any] = {"name": name}
        if consents and name in consents:
            entry["consent"] = consents[name]
        if index >= len(pinmap.lines):
            if len(spare) < 3:
                raise LinerecError(
                    f"too many simulated lines ({len(line_names)}): not enough GPIO pins"
                )
            entry.update(hook_pin=spare.pop(0), ring_pin=spare.pop(0), led_pin=spare.pop(0))
        lines.append(entry)
    data = {
        "device": {"id": "linerec-sim"},
        "hardware": {"backend": "sim"},
        "store": {"dir": str(store_dir)},
        "line": lines,
    }
    return parse_config(data, "<simulate defaults>")


def simulate(
    call_files: list[Path],
    *,
    config: Config | None,
    store_dir: Path | None,
    emit: Callable[[CallEvent], None],
    speed: float = 0.0,
    echo: bool = True,
    recipients: list[Path] | None = None,
) -> Simulation:
    """Play the call files (default: an inbound call) and record them; returns what happened."""
    paths = call_files or [example_call(DEFAULT_CALL)]
    calls: list[ScriptedCall] = [call for path in paths for call in load_call_file(path)]
    consents = _consents_asked(calls)
    if config is None:
        names = list(dict.fromkeys(call.line for call in calls))
        config = default_config(names, store_dir or DEFAULT_STORE, consents)
    else:
        if store_dir is not None:
            config = dataclasses.replace(
                config, store=dataclasses.replace(config.store, dir=store_dir)
            )
        _check_consents(calls, config)
    config, backend = open_sim_backend(config, calls, speed=speed, echo=echo)
    events: list[CallEvent] = []

    def record(event: CallEvent) -> None:
        events.append(event)
        emit(event)

    demo_key = None
    if not recipients and not config.store.recipients:
        demo_key, public = demo_keys(config.store.dir)
        recipients = [public]
    # With an [uplink], events are queued on the card exactly as the daemon does; nothing is
    # sent (a simulation needs no broker).
    recorder = build_recorder(
        config, backend, emit=record, recipients=recipients or None, connect=False, t0=0.0
    )
    # Run on past the last step long enough for a hang-up to be told from a hook flash.
    end = max(backend.script_end(line.name) + line.flash_max for line in config.lines) + TAIL
    recorder.run(threading.Event(), until=end)
    return Simulation(config=config, backend=backend, events=events, demo_key=demo_key)


def demo_keys(store_dir: Path) -> tuple[Path, Path]:
    """A collector key pair kept beside a simulated store, so a newcomer can decrypt what they
    recorded. A real appliance never holds a private key."""
    directory = private_dir(store_dir / "demo-keys")
    private, public = directory / "collector.key", directory / "collector.pub"
    if not (private.exists() and public.exists()):
        keys.keygen(directory)
        public.chmod(0o600)  # under the store directory, like everything else there
    return private, public

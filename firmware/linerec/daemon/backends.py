"""Backends by name (`[hardware] backend`), and the wiring of the simulated line."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from linerec.config import Config
from linerec.hardware.backend import Backend, GpioBackend
from linerec.sim.backend import SimBackend, SimLineSetup
from linerec.sim.callfile import CallFileError, ScriptedCall, load_call_file
from linerec.sim.line import render_line


def open_backend(config: Config) -> tuple[Config, Backend]:
    """The backend the configuration names; the sim backend plays `[sim] calls`."""
    if config.hardware.backend == "gpio":
        return config, GpioBackend()
    calls = [call for path in config.sim.calls for call in load_call_file(path)]
    return open_sim_backend(config, calls, speed=config.sim.speed)


def open_sim_backend(
    config: Config,
    calls: Iterable[ScriptedCall],
    *,
    speed: float,
    workdir: Path | None = None,
    echo: bool = True,
) -> tuple[Config, SimBackend]:
    """Render the calls onto the configured lines; returns the config pointed at the sim devices."""
    by_line: dict[str, list[ScriptedCall]] = {line.name: [] for line in config.lines}
    for call in calls:
        if call.line not in by_line:
            known = ", ".join(by_line)
            raise CallFileError(
                call.source,
                "call.line",
                f"no line named {call.line!r} in {config.path} (lines: {known})",
            )
        by_line[call.line].append(call)
    lines = []
    setups = []
    for line in config.lines:
        capture, playback = SimBackend.device_names(line.name)
        audio = dataclasses.replace(line.audio, capture_device=capture, playback_device=playback)
        lines.append(dataclasses.replace(line, audio=audio))
        setups.append(
            SimLineSetup(
                name=line.name,
                rendered=render_line(by_line[line.name]),
                hook_pin=line.pins.hook,
                hook_active_low=line.pins.hook_active_low,
                ring_pin=line.pins.ring,
                ring_active_low=line.pins.ring_active_low,
                button_pin=line.pins.button,
            )
        )
    config = dataclasses.replace(
        config,
        lines=tuple(lines),
        hardware=dataclasses.replace(config.hardware, backend="sim"),
    )
    backend = SimBackend(
        setups,
        [line.audio for line in lines],
        workdir or config.store.dir / ".sim",
        speed,
        echo=echo,
    )
    return config, backend

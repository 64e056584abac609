"""What the box's RAUC configuration (`/etc/rauc/system.conf`) says about updates to it.

One source of truth: the compatible string, the keyring (the update certificate, never a key)
and the slots are read from the file RAUC itself uses, so the checks made here before an
install can never disagree with the ones RAUC makes during it.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from linerec.errors import LinerecError

DEFAULT_SYSTEM_CONF = Path("/etc/rauc/system.conf")


class UpdateSetupError(LinerecError):
    """The box's update configuration is missing or unreadable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RaucSystem:
    conf: Path
    compatible: str
    keyring: Path
    slots: dict[str, str]  # bootname -> device, of the root slots


def read_system(conf: Path = DEFAULT_SYSTEM_CONF) -> RaucSystem:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with conf.open(encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise UpdateSetupError(f"{conf}: not a readable RAUC system.conf ({exc})") from exc
    compatible = parser.get("system", "compatible", fallback="").strip()
    if not compatible:
        raise UpdateSetupError(f"{conf}: [system] compatible is missing")
    keyring = parser.get("keyring", "path", fallback="").strip()
    if not keyring:
        raise UpdateSetupError(f"{conf}: [keyring] path is missing")
    path = Path(keyring)
    if not path.is_absolute():  # RAUC reads a relative keyring path beside system.conf
        path = conf.parent / path
    slots = {
        parser.get(section, "bootname"): parser.get(section, "device")
        for section in parser.sections()
        if section.startswith("slot.") and parser.has_option(section, "bootname")
    }
    return RaucSystem(conf=conf, compatible=compatible, keyring=path, slots=slots)

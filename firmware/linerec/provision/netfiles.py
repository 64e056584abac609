"""The text of the network files provisioning writes: systemd-networkd and wpa_supplicant.

Both are line-based and neither has an escape that every reader honours: a newline in a value
starts a directive of the attacker's choosing (`network={ key_mgmt=NONE }`, a second
`[Network]`). So each value is written in a form that cannot leave its line, or refused with
the reason before anything is written. The checks are public so the site file is refused
when it is read, naming its key, rather than half-way through setting the box up.

wpa_supplicant reads `key="..."` as everything between the first and the last double quote on
the line, with no escapes (so a backslash is a backslash); a value of printable ASCII is
therefore safe between quotes as it is. An SSID is up to 32 arbitrary bytes, so one that is
not plain printable ASCII is written in the hex form wpa_supplicant also accepts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
_COUNTRY = re.compile(r"[A-Z]{2}")
_INI_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")


class Unrepresentable(ValueError):
    """A value these files cannot hold safely; the message says why, without the value."""


def check_ssid(ssid: str) -> None:
    size = len(ssid.encode())
    if not 1 <= size <= 32:  # IEEE 802.11: the SSID element holds 0-32 octets
        raise Unrepresentable(f"must be 1-32 bytes (got {size})")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in ssid):
        raise Unrepresentable("must not contain control characters")


def check_passphrase(psk: str) -> None:
    # IEEE 802.11i: a WPA passphrase is 8 to 63 printable ASCII characters (32-126).
    if not _PRINTABLE_ASCII.fullmatch(psk):
        raise Unrepresentable("must be printable ASCII (letters, digits, space, punctuation)")
    if not 8 <= len(psk) <= 63:
        raise Unrepresentable(f"must be a passphrase of 8-63 characters (got {len(psk)})")


def check_country(country: str) -> None:
    if not _COUNTRY.fullmatch(country):
        raise Unrepresentable(f"must be a two-letter code like 'GB' (got {country!r})")


def wpa_supplicant_conf(*, ssid: str, psk: str, country: str) -> str:
    """One WPA-PSK network; raises Unrepresentable rather than write a value that could
    break out of its line."""
    check_ssid(ssid)
    check_passphrase(psk)
    check_country(country)
    quotable = _PRINTABLE_ASCII.fullmatch(ssid) and '"' not in ssid
    ssid_value = f'"{ssid}"' if quotable else ssid.encode().hex()
    return f'country={country}\nnetwork={{\n    ssid={ssid_value}\n    psk="{psk}"\n}}\n'


def networkd_file(sections: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> str:
    """A .network file from (section, [(key, value), ...]); values are single printable lines
    (no leading or trailing blank, which systemd strips, nor a trailing backslash, which
    continues the line)."""
    out: list[str] = []
    for section, entries in sections:
        if not _INI_NAME.fullmatch(section):
            raise Unrepresentable(f"section name {section!r} is not a plain word")
        out.append(f"[{section}]")
        for key, value in entries:
            if not _INI_NAME.fullmatch(key):
                raise Unrepresentable(f"key {key!r} is not a plain word")
            if (
                not _PRINTABLE_ASCII.fullmatch(value)
                or value != value.strip()
                or value.endswith("\\")
            ):
                raise Unrepresentable(f"{key}: value {value!r} cannot be written on one line")
            out.append(f"{key}={value}")
        out.append("")
    return "\n".join(out)

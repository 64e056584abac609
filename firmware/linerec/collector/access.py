"""The site broker's access.json (mosquitto's dynamic security plugin): linerec's clients and
roles merged into what is there, the operator's own kept.

An operator adds clients, roles and groups with `mosquitto_ctrl` (the broker saves them in the
same file), so `linerec collector enroll` does not write the file afresh. It owns only the
entries it names (`owned`: its devices, bridges and collector, and their roles, including
those it made once and now takes away); each of those is set to linerec's rules, and an owned
one linerec no longer has is removed, with every reference to it. Everything else (the
operator's clients, roles, groups, and the fields linerec does not write, such as a text name
or a role the operator gave one of linerec's clients) stays as it was. The default access is
the stricter of the two: what linerec denies (its confinement of the devices rests on it) and
what the operator denied as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linerec.errors import LinerecError

# The kinds of entry, the key naming each, and where other entries refer to them.
_KINDS = (("clients", "username"), ("roles", "rolename"), ("groups", "groupname"))


class AccessFileError(LinerecError, ValueError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Owned:
    """Names linerec gives (or gave) its clients and roles at a site."""

    clients: frozenset[str]
    roles: frozenset[str]


def read_access(path: Path) -> dict[str, Any] | None:
    """The access rules in `path` (None if there are none yet), checked to be what the plugin
    reads: an AccessFileError naming the file and the entry otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessFileError(f"{path}: not readable ({exc})") from exc
    try:
        rules = json.loads(text)
    except ValueError as exc:
        raise AccessFileError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(rules, dict):
        raise AccessFileError(f"{path}: not a JSON object")
    for kind, key in _KINDS:
        entries = rules.get(kind, [])
        if not isinstance(entries, list):
            raise AccessFileError(f"{path}: {kind}: not a list")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get(key), str):
                raise AccessFileError(f"{path}: {kind}[{index}]: no {key}")
            for refs in ("roles", "clients", "groups"):
                if refs in entry and not (
                    isinstance(entry[refs], list)
                    and all(isinstance(ref, dict) for ref in entry[refs])
                ):
                    raise AccessFileError(f"{path}: {kind}[{index}].{refs}: not a list of objects")
    default = rules.get("defaultACLAccess", {})
    if not isinstance(default, dict):
        raise AccessFileError(f"{path}: defaultACLAccess: not an object")
    return rules


def merge_access(
    current: dict[str, Any] | None, ours: dict[str, Any], owned: Owned
) -> dict[str, Any]:
    """`current` (the file's rules, None for none) with linerec's rules `ours` merged in."""
    if current is None:
        return ours
    our_clients = {c["username"]: c for c in ours["clients"]}
    our_roles = {r["rolename"]: r for r in ours["roles"]}
    owned_roles = owned.roles | our_roles.keys()
    gone_clients = owned.clients - our_clients.keys()
    gone_roles = frozenset(owned_roles - our_roles.keys())

    clients = []
    for client in current.get("clients", []):
        name = client["username"]
        if name in gone_clients:
            continue
        mine = our_clients.pop(name, None)
        if mine is not None:  # linerec's roles first, any the operator added after them
            added = [r for r in client.get("roles", []) if r.get("rolename") not in owned_roles]
            client = {**client, "roles": [*mine["roles"], *added]}
        elif (kept := _without(client.get("roles"), "rolename", gone_roles)) is not None:
            client = {**client, "roles": kept}
        clients.append(client)
    clients += our_clients.values()

    roles = []
    for role in current.get("roles", []):
        name = role["rolename"]
        if name in gone_roles:
            continue
        mine = our_roles.pop(name, None)
        roles.append(role if mine is None else {**role, **mine})
    roles += our_roles.values()

    groups = []
    for group in current.get("groups", []):
        for refs, key, gone in (
            ("clients", "username", gone_clients),
            ("roles", "rolename", gone_roles),
        ):
            kept = _without(group.get(refs), key, gone)
            if kept is not None:
                group = {**group, refs: kept}
        groups.append(group)

    theirs_default = current.get("defaultACLAccess", {})
    default = {
        **theirs_default,
        **{
            kind: allowed and theirs_default.get(kind, allowed) is True
            for kind, allowed in ours["defaultACLAccess"].items()
        },
    }
    return {
        **current,
        "defaultACLAccess": default,
        "clients": clients,
        "groups": groups,
        "roles": roles,
    }


def _without(
    refs: list[dict[str, Any]] | None, key: str, gone: frozenset[str]
) -> list[dict[str, Any]] | None:
    """`refs` less those naming one of `gone`; None if there were none to take out (the
    entry is then kept exactly as it was)."""
    if refs is None or not any(ref.get(key) in gone for ref in refs):
        return None
    return [ref for ref in refs if ref.get(key) not in gone]

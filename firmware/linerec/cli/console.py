"""Commands for the collector's web console: `collector user ...` and `collector web`.

They need the optional `collector` extra (`pip install 'linerec[collector]'`), imported only
inside the handlers, so the appliance's `linerec` never loads a web library.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from linerec.collector.accounts import Accounts, NewAccount

ROLES = ("listener", "supervisor", "admin")


def add_commands(collector: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = collector.add_parser("user", help="console accounts (two-factor login)")
    users = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = users.add_parser("add", help="make an account; prints its authenticator QR code")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(handler=_user_add)
    listing = users.add_parser("list", help="the accounts, their roles and grants")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_user_list)
    disable = users.add_parser("disable", help="no more logins; ends its sessions")
    disable.add_argument("name", metavar="NAME")
    disable.set_defaults(handler=_user_disable)
    enable = users.add_parser("enable", help="allow logins again (and lift a lockout)")
    enable.add_argument("name", metavar="NAME")
    enable.set_defaults(handler=_user_enable)
    reset = users.add_parser("reset-totp", help="a new authenticator secret (QR code)")
    reset.add_argument("name", metavar="NAME")
    reset.set_defaults(handler=_user_reset_totp)
    passwd = users.add_parser("passwd", help="set a new password")
    passwd.add_argument("name", metavar="NAME")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(handler=_user_passwd)
    grant = users.add_parser("grant", help="let a listener hear a line or a label")
    revoke = users.add_parser("revoke", help="take a grant back")
    for parser, handler in ((grant, _user_grant), (revoke, _user_revoke)):
        parser.add_argument("name", metavar="NAME")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--line", metavar="DEVICE/LINE", help="DEVICE/* for all its lines")
        what.add_argument("--label", metavar="LABEL")
        parser.set_defaults(handler=handler)
    token = users.add_parser("token", help="a bearer token for scripts, scoped to a role")
    token.add_argument("name", metavar="NAME")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--days", type=float, default=90.0)
    token.set_defaults(handler=_user_token)
    web = collector.add_parser("web", help="serve the web console and its JSON API")
    web.set_defaults(handler=_web)
    for sub_parser in (add, listing, disable, enable, reset, passwd, grant, revoke, token, web):
        sub_parser.add_argument("--config", type=Path, default=None)


def _accounts(args: argparse.Namespace) -> Accounts:
    from linerec.collector.accounts import Accounts
    from linerec.collector.config import DEFAULT_PATH, load_collector_config
    from linerec.collector.store import CollectorStore

    settings = load_collector_config(args.config or DEFAULT_PATH)
    return Accounts(CollectorStore(settings.data_dir, settings.database).db)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("linerec: error: the two passwords differ")
    return first


def _show_secret(account: NewAccount) -> None:
    import segno

    print(f"{account.name} ({account.role}): scan this with an authenticator app, or enter")
    print(f"  {account.uri}")
    segno.make(account.uri, error="m").terminal(out=sys.stdout, compact=True)


def _fail(exc: Exception) -> int:
    print(f"linerec: error: {exc}", file=sys.stderr)
    return 1


def _user_add(args: argparse.Namespace) -> int:
    from linerec.collector.accounts import AccountError

    accounts = _accounts(args)
    try:
        account = accounts.add(args.name, args.role, _password(args))
    except AccountError as exc:
        return _fail(exc)
    accounts.audit.record(who=_who(), action="user add", reason=f"{args.name} as {args.role}")
    _show_secret(account)
    return 0


def _user_list(args: argparse.Namespace) -> int:
    import json

    for user in _accounts(args).users():
        if args.json:
            print(json.dumps(user))
        else:
            state = "disabled" if user["disabled"] else "locked" if user["locked"] else "active"
            print(
                f"{user['name']:32} {user['role']:10} {state:8} {' '.join(user['grants'])}".rstrip()
            )
    return 0


def _change(args: argparse.Namespace, action: str, done: str) -> int:
    from linerec.collector.accounts import AccountError

    accounts = _accounts(args)
    try:
        if action == "user disable":
            accounts.disable(args.name)
        elif action == "user enable":
            accounts.enable(args.name)
        elif action == "user passwd":
            accounts.set_password(args.name, _password(args))
        elif action in ("user grant", "user revoke"):
            kind, value = ("line", args.line) if args.line else ("label", args.label)
            change = accounts.grant if action == "user grant" else accounts.revoke
            change(args.name, kind, value)
            done = f"{done} {kind} {value}"
    except AccountError as exc:
        return _fail(exc)
    accounts.audit.record(who=_who(), action=action, reason=f"{args.name}: {done}")
    print(f"{args.name}: {done}")
    return 0


def _user_disable(args: argparse.Namespace) -> int:
    return _change(args, "user disable", "disabled; its sessions are ended")


def _user_enable(args: argparse.Namespace) -> int:
    return _change(args, "user enable", "enabled")


def _user_passwd(args: argparse.Namespace) -> int:
    return _change(args, "user passwd", "password changed; its sessions are ended")


def _user_grant(args: argparse.Namespace) -> int:
    return _change(args, "user grant", "granted")


def _user_revoke(args: argparse.Namespace) -> int:
    return _change(args, "user revoke", "no longer granted")


def _user_reset_totp(args: argparse.Namespace) -> int:
    from linerec.collector.accounts import AccountError

    accounts = _accounts(args)
    try:
        account = accounts.reset_totp(args.name)
    except AccountError as exc:
        return _fail(exc)
    accounts.audit.record(who=_who(), action="user reset-totp", reason=args.name)
    _show_secret(account)
    return 0


def _user_token(args: argparse.Namespace) -> int:
    from linerec.collector.accounts import AccountError

    accounts = _accounts(args)
    try:
        token = accounts.issue_token(args.name, args.role, args.days)
    except AccountError as exc:
        return _fail(exc)
    accounts.audit.record(
        who=_who(), action="user token", reason=f"{args.name} as {args.role}, {args.days:g} days"
    )
    print(token)
    return 0


def _who() -> str:
    from linerec.collector.audit import cli_user

    return cli_user()


def _web(args: argparse.Namespace) -> int:
    from linerec.collector.config import DEFAULT_PATH
    from linerec.collector.web.serve import serve

    serve(args.config or DEFAULT_PATH)
    return 0

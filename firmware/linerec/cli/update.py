"""`linerec update`: install a signed bundle on the box, and say what runs (docs/updates.md)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    update = commands.add_parser("update", help="signed A/B updates of the box's software")
    actions = update.add_subparsers(dest="update_command", required=True, metavar="ACTION")
    install = actions.add_parser(
        "install",
        help="check a signed bundle and install it into the other root slot; the box reboots "
        "into it once every line is idle",
    )
    install.add_argument("bundle", type=Path, metavar="BUNDLE")
    install.add_argument("--config", type=Path, default=None, help="linerec.toml")
    install.add_argument(
        "--no-reboot",
        action="store_true",
        help="when linerec.service is not running: leave the reboot to the technician",
    )
    install.set_defaults(handler=_install)
    status = actions.add_parser("status", help="the running release, its slot, a pending update")
    status.add_argument("--config", type=Path, default=None, help="linerec.toml")
    status.set_defaults(handler=_status)
    carry = actions.add_parser(
        "carry-over",
        help="copy this box's site set-up (configuration, keys, network, SSH) into the root "
        "filesystem an update wrote (run by RAUC's post-install handler)",
    )
    carry.add_argument("target", type=Path, metavar="TARGET_ROOT")
    carry.add_argument(
        "--source", type=Path, default=Path("/"), help="the running root (default /)"
    )
    carry.set_defaults(handler=_carry_over)


def _install(args: argparse.Namespace) -> int:
    from linerec import __version__
    from linerec.call.events import CallEvent
    from linerec.config import DEFAULT_PATH, load_config
    from linerec.daemon.report import event_text
    from linerec.update.events import UpdateRefused
    from linerec.update.installer import Updater
    from linerec.update.state import UpdateState
    from linerec.update.system import read_system

    config = load_config(args.config or DEFAULT_PATH)
    system = read_system(config.update.system_conf)
    refused: list[str] = []

    def show(event: CallEvent) -> None:
        if isinstance(event, UpdateRefused):
            refused.append(event.reason)
        else:
            print(event_text(event))

    updater = Updater(
        system=system,
        state=UpdateState(config.store.dir),
        running_version=__version__,
        emit=show,
        clock=lambda: 0.0,
    )
    pending = updater.install_file(args.bundle.absolute())
    if refused:
        print(f"linerec: update refused: {refused[0]}; nothing was changed", file=sys.stderr)
        return 1
    if pending is None:
        print("linerec: update failed; the running system is as it was", file=sys.stderr)
        return 1
    recorder = subprocess.run(
        ["systemctl", "is-active", "--quiet", "linerec.service"], check=False
    ).returncode
    if recorder == 0:
        print(
            f"{pending.version} installed in slot {pending.slot}: linerec.service reboots the box "
            f"into it once every line is idle (at most [update] max_wait_s = "
            f"{config.update.max_wait:g} s)"
        )
    elif args.no_reboot:
        print(f"{pending.version} installed in slot {pending.slot}: boots at the next reboot")
    else:
        updater.state.request_reboot()  # linerec-update-reboot.path reboots
        print(
            f"{pending.version} installed in slot {pending.slot}: linerec.service is not "
            "running; rebooting now"
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    from linerec import __version__
    from linerec.config import DEFAULT_PATH, load_config
    from linerec.update import rauc
    from linerec.update.state import UpdateState

    config = load_config(args.config or DEFAULT_PATH)
    try:
        booted = rauc.status().get("booted")
    except (rauc.RaucFailed, OSError) as exc:
        print(f"linerec: rauc status: {exc}", file=sys.stderr)
        return 1
    print(f"running {__version__} from slot {booted}")
    pending = UpdateState(config.store.dir).pending()
    if pending is not None:
        print(
            f"pending: {pending.version} in slot {pending.slot} (installed from "
            f"{pending.previous} in slot {pending.previous_slot})"
        )
    return 0


def _carry_over(args: argparse.Namespace) -> int:
    from linerec.update.carry import carry_over

    target: Path = args.target
    if not (target / "etc").is_dir():
        print(f"linerec: error: {target}: not a root filesystem (no etc/)", file=sys.stderr)
        return 2
    for line in carry_over(args.source, target):
        print(line)
    return 0

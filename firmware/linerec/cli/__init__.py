"""The `linerec` command: the only place that parses arguments.

One module per command group: `appliance` (the recorder on the box), `update` (its signed
software updates), `recordings` (keys and recordings on a card), `collector` (the server side)
and `console` (the collector's web console and its accounts). Each binds its subcommands to
their handlers with `set_defaults(handler=...)`.

Exit status: 0 done; 1 a failure at run time; 2 bad input (configuration, call file, usage),
with a message that names the file and the key or step.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from linerec import __version__
from linerec.errors import LinerecError, one_line


class _Formatter(argparse.HelpFormatter):
    """argparse's own, told the terminal's width: left to find it, it imports shutil (with
    bz2, lzma and their libraries, 0.5 MB) into every process, `linerec run` too (issue 19),
    since each add_argument makes a formatter."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        width = _columns() - 2 if width is None else width  # what argparse takes
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size gives it: $COLUMNS, else the width
    of the terminal on stdout, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class Parser(argparse.ArgumentParser):
    """The ArgumentParser of linerec's command lines (and the benches'): with the formatter
    above; its subcommands' parsers are of this class too (argparse makes them of the
    parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; for a command of the recorder's own group, that group alone
    (`linerec analyze` on a short file: loading the other groups would cost more than its
    work)."""
    from linerec.cli import appliance

    top: argparse.ArgumentParser = Parser(
        prog="linerec", description="Call-recorder appliance for analog telephone lines."
    )
    top.add_argument("--version", action="version", version=f"linerec {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    appliance.add_commands(commands)
    if command in commands.choices:
        return top
    from linerec.cli import collector, console, recordings, update

    recordings.add_commands(commands)
    update.add_commands(commands)
    console.add_commands(collector.add_commands(commands))
    return top


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = parser(arguments[0] if arguments else None).parse_args(arguments)
    try:
        status: int = args.handler(args)
        return status
    except LinerecError as exc:
        print(f"linerec: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `linerec ... | head`: the reader has all it wanted
        sys.stderr.close()
        return 0

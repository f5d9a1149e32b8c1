"""The ``vgcore`` command: ``vgcore COMMAND [options]`` (``python -m vgcore`` works too).

Every command has ``--help`` with examples.  A bad argument (an unknown activation, a
negative depth, an unreadable config) gets a one-line reason and exit code 2, not a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from vgcore.commands import COMMANDS
from vgcore.commands._common import CommandError

DEFAULT = "compare" if "compare" in COMMANDS else "demo"


class _Parser(argparse.ArgumentParser):
    def error(self, message):          # one line, then exit 2
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vgcore",
                     description="See, measure and fix vanishing and exploding gradients in "
                                 "deep MLPs.",
                     epilog="run `vgcore COMMAND --help` for a command's options and examples")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"vgcore.commands.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = [DEFAULT] + argv          # `vgcore` alone runs the main job
    args = parser.parse_args(argv)
    args.argv = argv                   # what was run, for the reports' run record
    try:
        return int(args.func(args) or 0)
    except CommandError as e:
        print(f"vgcore {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vgcore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:            # e.g. `vgcore bench | head`: the reader left
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

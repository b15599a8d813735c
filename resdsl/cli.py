"""The ``resdsl`` command line. Each subcommand lives in ``resdsl/commands/<name>.py``.

User errors print one ``resdsl: error: ...`` line (then, indented, the model line it points
at, when it has one) and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import ResdslError

COMMANDS = ("compile", "run", "passes", "show", "viz", "analyze", "weights", "bench", "tune", "export", "serve")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: same one-line form, exit 2
        sys.stderr.write(f"resdsl: error: {message} (see 'resdsl {self.prog.split()[-1]} --help')\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="resdsl", description="Compile and run residual networks written in the resdsl DSL.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"resdsl {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"resdsl.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"resdsl.commands.{name}":
                continue  # a command not built yet
            raise
        module.add_parser(sub)
    return parser


def _version() -> str:
    from .version import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ResdslError as e:
        if args.debug:
            raise
        sys.stderr.write(f"resdsl: error: {e.render_long()}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("resdsl: interrupted\n")
        return 130
    except Exception as e:  # a bug or an unexpected library error: still one line unless --debug
        if args.debug:
            raise
        sys.stderr.write(f"resdsl: error: internal error: {type(e).__name__}: {e} (rerun with --debug for details)\n")
        return 3


if __name__ == "__main__":
    sys.exit(main())

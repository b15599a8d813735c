"""The ``resdsl`` command line. Each subcommand lives in ``resdsl/commands/<name>.py``.

User errors print one ``resdsl: error: ...`` line (then, indented, the model line it points
at, when it has one) and exit 2; ``--debug`` shows the traceback.
Errors of the user's environment (OSError: permissions, read-only or full file systems, missing
directories; MemoryError) are the user's too: one line, exit 2, and what to do. Exit 3 is left
for resdsl's own defects, with a request to report them.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from .errors import ResdslError

# Command name -> module, where the name is a Python keyword.
_MODULES = {"import": "import_model"}
COMMANDS = (
    "compile",
    "run",
    "passes",
    "show",
    "viz",
    "analyze",
    "weights",
    "bench",
    "tune",
    "export",
    "serve",
    "import",
    "quantize",
)


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
            module = importlib.import_module(f"resdsl.commands.{_MODULES.get(name, name)}")
        except ModuleNotFoundError as e:
            if e.name == f"resdsl.commands.{_MODULES.get(name, name)}":
                continue  # a command not built yet
            raise
        module.add_parser(sub)
    return parser


def _version() -> str:
    from .version import __version__

    return __version__


# What to do about an OSError, by errno; others get the generic advice.
_OS_ADVICE = {
    errno.EACCES: "check the permissions, or write elsewhere",
    errno.EPERM: "check the permissions, or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.ENOSPC: "the disk is full: free some space, or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: free some space, or write elsewhere",
    errno.ENOENT: "check that the path exists",
    errno.ENOTDIR: "a part of the path is a file, not a directory: check the path",
    errno.EISDIR: "it is a directory: name a file",
    errno.EEXIST: "it already exists, perhaps as a file where a directory is needed: check the path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
}
# Runtimes report a failed allocation as their own exception, not MemoryError.
_OOM_MARKERS = ("std::bad_alloc", "Failed to allocate memory", "out of memory", "Out of memory")


def _os_error(e: OSError) -> str:
    where = " ".join(repr(os.fspath(f)) for f in (e.filename, e.filename2) if f is not None)
    what = e.strerror or str(e)
    advice = _OS_ADVICE.get(e.errno, "check the path, its permissions and the free space")
    return f"{what}{': ' + where if where else ''} ({advice})"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a redirected stdout on a full disk fails here, as an OSError, not at exit
        return code
    except ResdslError as e:
        if args.debug:
            raise
        sys.stderr.write(f"resdsl: error: {e.render_long()}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("resdsl: interrupted\n")
        return 130
    except OSError as e:  # the user's file system: permissions, read-only, full, missing directories
        if args.debug:
            raise
        sys.stderr.write(f"resdsl: error: {_os_error(e)}\n")
        return 2
    except MemoryError:
        if args.debug:
            raise
        sys.stderr.write("resdsl: error: out of memory (lower the batch or the model's sizes, or free memory)\n")
        return 2
    except Exception as e:  # a bug or an unexpected library error: still one line unless --debug
        if args.debug:
            raise
        if any(marker in str(e) for marker in _OOM_MARKERS):
            sys.stderr.write(
                f"resdsl: error: out of memory in {type(e).__name__}: {_first_line(e)[:200]} "
                "(lower the batch or the model's sizes, or free memory)\n"
            )
            return 2
        sys.stderr.write(
            f"resdsl: error: internal error: {type(e).__name__}: {_first_line(e)[:300]} "
            "(a defect in resdsl: please report it with the output of --debug)\n"
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())

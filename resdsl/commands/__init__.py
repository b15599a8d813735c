"""Subcommands of the ``resdsl`` CLI, one a module, each with ``add_parser(subparsers)``."""

from __future__ import annotations

import argparse
import os

from resdsl.driver import CompileRequest
from resdsl.errors import ResdslError
from resdsl.loader import parse_arg


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (batch sizes, counts)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer of at least 0 (seeds: numpy refuses negative ones)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer of 0 or more")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def output_file(text: str) -> str:
    """An argparse type: a file to write, refused up front when it names a directory,
    so that no work is done (and no sidecar written) for an output that cannot be."""
    if not text or os.path.isdir(text) or text.endswith(os.sep):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory: name the file to write (a path inside it)")
    _parent_is_directory(text)
    return text


def _parent_is_directory(text: str) -> None:
    """Refuse a path below an existing file (``notes.txt/out.onnx``), which no mkdir can create."""
    parent = os.path.dirname(os.path.abspath(text))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{text!r} lies below {parent!r}, which is a file, not a directory")


def output_dir(text: str) -> str:
    """An argparse type: a directory to write into, refused up front when it names a file."""
    if not text or (os.path.exists(text) and not os.path.isdir(text)):
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a directory; name a directory to write into")
    _parent_is_directory(text)
    return text


def add_model_args(p: argparse.ArgumentParser) -> None:
    """MODEL.py, --model and --arg, shared by every command that builds a model."""
    p.add_argument(
        "model_file", metavar="MODEL.py", help="a model file written in the resdsl DSL, or an ONNX file (.onnx)"
    )
    p.add_argument("--model", help="which @resdsl.model of the file (needed when it has several)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="argument of the model function")


def add_pass_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-O", dest="level", type=int, default=2, choices=(0, 1, 2), help="optimisation level (default 2)")
    p.add_argument(
        "--passes",
        metavar="PIPELINE",
        help="explicit pipeline (overrides -O), e.g. 'shortcuts{mode=A},dce,fold_batchnorm'; see 'resdsl passes'",
    )
    p.add_argument(
        "--shortcut",
        choices=("A", "B", "C"),
        help="shortcut option (default: the model's, else B); fills shortcuts{mode=}",
    )
    p.add_argument(
        "--residual-scale",
        metavar="inv-depth|ALPHA",
        help="inv-depth: x/L + F(x), L the number of residual adds; ALPHA: x + ALPHA*F(x) (off by default); "
        "fills scale_residuals{scale=}",
    )


def model_arguments(args: argparse.Namespace) -> dict:
    out = {}
    for text in args.arg:
        key, value = parse_arg(text)
        if key in out:
            raise ResdslError(f"--arg {key} given twice")
        out[key] = value
    return out


def pass_list(args: argparse.Namespace) -> list[str] | None:
    """The --passes pipeline text, whole (options in braces may hold commas); parsed by the pass manager."""
    if not getattr(args, "passes", None) or not args.passes.strip():
        return None
    return [args.passes]


def compile_request(args: argparse.Namespace, path: str | None = None, **extra) -> CompileRequest:
    """The CompileRequest that the model and pass flags of ``compile``, ``bench`` and ``tune`` describe."""
    return CompileRequest(
        path=path or args.model_file,
        model=args.model,
        arguments=model_arguments(args),
        level=args.level,
        passes=pass_list(args),
        shortcut=args.shortcut,
        residual_scale=args.residual_scale,
        weights=getattr(args, "weights", None),
        **extra,
    )


def emit_options(
    args: argparse.Namespace, target: str, provenance: dict | None = None, db: bool = True, batch: bool = True
):
    """The backend options record for ``target`` from the flags of ``compile``, ``bench`` or
    ``tune`` (a command without a flag gets its default). ``db=False`` where ``--db`` is an
    output (``tune``), not a database to apply; ``batch=False`` where ``--batch`` lists the
    batch sizes to run (``bench``), not one to compile for."""
    from resdsl.backends import make_options

    return make_options(
        target,
        arch=getattr(args, "arch", None),
        batch=getattr(args, "batch", None) if batch else None,
        db=getattr(args, "db", None) if db else None,
        mcpu=getattr(args, "mcpu", None),
        winograd=getattr(args, "winograd", True),
        tophub=getattr(args, "tophub", True),
        provenance=provenance,
    )

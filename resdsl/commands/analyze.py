"""``resdsl analyze``: measure signal propagation through the residual blocks at initialisation."""

from __future__ import annotations

import argparse
import json

from . import add_model_args, model_arguments, nonnegative_int, output_file, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="std of each residual block's input and branch at initialisation")
    add_model_args(p)
    p.add_argument(
        "--residual-scale",
        metavar="inv-depth|ALPHA",
        help="inv-depth: x/L + F(x), L the number of residual adds; ALPHA: x + ALPHA*F(x)",
    )
    p.add_argument("--shortcut", choices=("A", "B", "C"), help="shortcut option (default: the model's, else B)")
    p.add_argument("--batch", type=positive_int, default=2, help="random inputs per measurement (default 2)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random inputs")
    p.add_argument(
        "-o", "--output", type=output_file, metavar="PLOT.png", help="also plot the stds by depth (needs matplotlib)"
    )
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resdsl import analysis
    from resdsl.driver import signal_propagation
    from resdsl.errors import ResdslError
    from resdsl.loader import load_graph

    raw, name, _ = load_graph(args.model_file, args.model, model_arguments(args))
    stats = signal_propagation(raw, args.residual_scale, args.shortcut, batch=args.batch, seed=args.seed)
    if not stats:
        raise ResdslError(f"model {name!r} has no residual connections to analyse")
    if args.json:
        print(json.dumps([s.as_dict() for s in stats], indent=1))
    else:
        scale = f", residual scale {args.residual_scale}" if args.residual_scale else ", identity shortcuts"
        print(f"{name}: {len(stats)} residual blocks at initialisation{scale}")
        print(analysis.format_table(stats))
    if args.output:
        analysis.plot(stats, args.output, f"{name}{' x' + args.residual_scale if args.residual_scale else ''}")
        print(f"wrote {args.output}")
    return 0

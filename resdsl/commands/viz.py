"""``resdsl viz``: draw a model as DOT, SVG or PNG with its shortcuts, projections and fusions marked."""

from __future__ import annotations

import argparse

from . import add_model_args, model_arguments, output_file


def add_parser(sub) -> None:
    p = sub.add_parser("viz", help="draw the model graph (.dot, or .svg/.png with Graphviz)")
    add_model_args(p)
    p.add_argument(
        "-o", "--output", required=True, type=output_file, metavar="FILE", help="graph.dot, graph.svg or graph.png"
    )
    p.add_argument("--level", choices=("blocks", "ops"), default="ops", help="one box per block, or per op")
    p.add_argument("-O", dest="level_opt", type=int, default=2, choices=(0, 1, 2), help="optimisation level")
    p.add_argument("--shortcut", choices=("A", "B", "C"), help="shortcut option (default: the model's, else B)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resdsl import viz
    from resdsl.driver import CompileRequest, build_graph

    request = CompileRequest(
        path=args.model_file,
        model=args.model,
        arguments=model_arguments(args),
        level=args.level_opt,
        shortcut=args.shortcut,
    )
    graph, _ = build_graph(request)
    print(f"wrote {viz.write(graph, args.output, args.level)}")
    return 0

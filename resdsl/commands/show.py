"""``resdsl show``: a per-layer table (shape, parameters, MACs) and the model's totals."""

from __future__ import annotations

import argparse
import json

from . import add_model_args, model_arguments, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="table of layers, parameters, MACs, activation memory and residuals")
    add_model_args(p)
    p.add_argument("-O", dest="level", type=int, default=0, choices=(0, 1, 2), help="optimisation level (default 0)")
    p.add_argument("--shortcut", choices=("A", "B", "C"), help="shortcut option (default: the model's, else B)")
    p.add_argument("--depth", type=positive_int, metavar="K", help="group rows by the first K parts of their names")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resdsl.driver import CompileRequest, build_graph
    from resdsl.summary import format_summary, summarize

    arguments = model_arguments(args)
    request = CompileRequest(
        path=args.model_file, model=args.model, arguments=arguments, level=args.level, shortcut=args.shortcut
    )
    graph, _ = build_graph(request)
    request.passes = ["shortcuts"]
    canonical, _ = build_graph(request)
    summary = summarize(graph, canonical)
    if args.json:
        data = summary.as_dict()
        data.update(arguments=arguments, level=args.level)
        print(json.dumps(data, indent=1, default=str))
    else:
        print(format_summary(summary, args.depth))
    return 0

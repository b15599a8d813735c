"""``resdsl weights export``: write a model's initial weights as .safetensors or .npz."""

from __future__ import annotations

import argparse

from . import add_model_args, model_arguments, output_file


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="export a model's weights (state_dict names)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    e = actions.add_parser("export", help="write the model's state_dict to .safetensors or .npz")
    add_model_args(e)
    e.add_argument("--shortcut", choices=("A", "B", "C"), help="shortcut option (default: the model's, else B)")
    e.add_argument("--weights", metavar="FILE", help="load these weights first (convert .pt to .safetensors)")
    e.add_argument(
        "-o", "--output", required=True, type=output_file, metavar="FILE", help="FILE.safetensors or FILE.npz"
    )
    e.set_defaults(func=run_export)
    p.set_defaults(func=lambda args: p.error("choose an action: export"))


def run_export(args: argparse.Namespace) -> int:
    from resdsl.driver import canonicalize
    from resdsl.loader import build_model, pick_model
    from resdsl.weights import export_weights, load_weights_file

    model = pick_model(args.model_file, args.model)
    graph = canonicalize(build_model(model, **model_arguments(args)), args.shortcut)
    if args.weights:
        load_weights_file(graph, args.weights)
    export_weights(graph, args.output)
    state = graph.state_dict()
    print(f"wrote {args.output}: {len(state)} tensors, {graph.num_parameters():,} trainable parameters")
    return 0

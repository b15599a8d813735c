"""``resdsl import MODEL.onnx -o model.py``: an ONNX file as an editable DSL model plus its weights.

The DSL file compiles, with ``--weights`` pointing at the ``.safetensors`` written beside it, to
the numbers of the ONNX file. Parameter names are the DSL's (``<layer>.weight``); a JSON sidecar
``<model>.onnx_names.json`` maps each back to the ONNX initializer it came from.
"""

from __future__ import annotations

import argparse
import json
import os

from resdsl.errors import ResdslError

from . import output_file


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="write an ONNX file as a DSL model file plus its weights (.safetensors)")
    p.add_argument("onnx_file", metavar="MODEL.onnx", help="an ONNX file (opsets 13-20)")
    p.add_argument("-o", "--output", required=True, type=output_file, metavar="MODEL.py", help="the DSL file to write")
    p.add_argument("--weights", metavar="FILE", help="where to write the weights (default: MODEL.safetensors)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from safetensors.numpy import save_file

    from resdsl.atomic import atomic_paths
    from resdsl.onnx_import import import_onnx, is_onnx
    from resdsl.onnx_import.dsl_writer import to_dsl

    if not is_onnx(args.onnx_file):
        raise ResdslError(f"{args.onnx_file!r} is not an .onnx file", hint="resdsl import reads ONNX files")
    if not args.output.endswith(".py"):
        raise ResdslError(f"-o {args.output!r} must name a .py file")
    graph = import_onnx(args.onnx_file)
    text, weights = to_dsl(graph, os.path.basename(args.onnx_file))
    stem = os.path.splitext(args.output)[0]
    weights_path = args.weights or stem + ".safetensors"
    names = graph.meta.get("onnx_names", {})
    mapping = {dsl: names.get(ir, ir) for dsl, ir in _dsl_to_ir(graph, weights).items()}
    with atomic_paths(args.output, weights_path, stem + ".onnx_names.json") as (tmp_py, tmp_w, tmp_names):
        with open(tmp_py, "w", encoding="utf-8") as f:
            f.write(text)
        save_file({k: v for k, v in sorted(weights.items())}, tmp_w)
        with open(tmp_names, "w", encoding="utf-8") as f:
            json.dump(mapping, f, indent=1, sort_keys=True)
    print(f"wrote {args.output}, {weights_path} ({len(weights)} tensors) and {stem}.onnx_names.json")
    print(f"compile it with: resdsl compile {args.output} --weights {weights_path} ...")
    return 0


def _dsl_to_ir(graph, weights: dict) -> dict[str, str]:
    """DSL parameter name -> the imported graph's parameter name holding the same array."""
    by_id = {id(v): k for k, v in graph.parameters.items()}
    return {k: by_id.get(id(v), k) for k, v in weights.items()}

"""``resdsl compile``: build a model, optimise it, and write an artifact."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from . import add_model_args, add_pass_args, compile_request, emit_options, output_file, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("compile", help="compile a model file to ONNX or a TVM module")
    add_model_args(p)
    add_pass_args(p)
    p.add_argument("--target", default="onnx", help="onnx, onnx-ort, llvm (cpu) or cuda (default onnx)")
    p.add_argument(
        "-o", "--output", required=True, type=output_file, metavar="OUT", help="artifact path (.onnx, or .so for TVM)"
    )
    p.add_argument("--arch", default="sm_90", help="CUDA architecture for --target cuda (default sm_90)")
    p.add_argument("--batch", type=positive_int, help="fix the batch size (TVM); default: symbolic")
    p.add_argument(
        "--mcpu", metavar="CPU", help="build for this CPU family (llvm; LLVM's name, e.g. x86-64-v3); default: this one"
    )
    p.add_argument("--weights", metavar="FILE", help="load parameters from .safetensors, .npz or .pt")
    p.add_argument(
        "--db", metavar="PATH", help="tuned kernels to apply (TVM): a tile book (.json) or a MetaSchedule directory"
    )
    p.add_argument(
        "--no-winograd",
        dest="winograd",
        action="store_false",
        help="keep every 3x3 conv direct (llvm; by default Winograd where it pays)",
    )
    p.add_argument(
        "--no-tophub", dest="tophub", action="store_false", help="do not apply the tile book shipped for this CPU"
    )
    p.add_argument(
        "--quantize", metavar="QPARAMS.json", help="build the static int8 artifact (onnx, llvm) from resdsl quantize"
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float16", "bfloat16"),
        help="compute in this float dtype (default float32); batch norm is folded in float32 first",
    )
    p.add_argument(
        "--keep-float32",
        default="default",
        choices=("default", "none"),
        help="with --dtype: keep softmax, norm statistics, pooling accumulations and logits in float32 "
        "(default) or convert everything (none)",
    )
    p.add_argument("--force", action="store_true", help="compile even when the model looks too big for the memory")
    p.add_argument("--verbose", action="store_true", help="print the pass table")
    p.add_argument("--dump-after", metavar="PASS|all", help="dump the graph after a pass (text and DOT)")
    p.add_argument("--dump-dir", default="resdsl-dump", metavar="DIR", help="where --dump-after writes")
    p.add_argument(
        "--explain",
        metavar="RULE|PASS",
        help="print to stderr each candidate the rule (or the pass's rules) left alone: node, line and reason",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resdsl.backends import check_dtype, emit
    from resdsl.driver import build_graph
    from resdsl.errors import ResdslError
    from resdsl.resources import guard

    options = emit_options(args, args.target)  # a flag the target does not take fails before the build
    req = compile_request(
        args,
        verify=True,
        dump_after=args.dump_after,
        dump_dir=args.dump_dir if args.dump_after else None,
        explain=args.explain,
        dtype=args.dtype,
        keep_float32=args.keep_float32,
    )
    check_dtype(args.dtype, options.target)  # before the build: a pair no runtime runs writes nothing
    refuse_overwriting_inputs(args, options.target)
    if args.quantize and args.dtype != "float32":
        raise ResdslError("--quantize builds an int8 artifact from the float32 model", hint="drop --dtype")
    t0 = time.perf_counter()
    graph, pipeline = build_graph(req)
    for text in pipeline.explained:
        sys.stderr.write(text + "\n")
    if args.quantize:
        graph = quantized(graph, args.quantize, options.target)
    guard(graph, args.batch or 1, args.force)
    if args.verbose:
        if args.dtype != "float32":
            from resdsl.passes.convert_dtype import policy

            print(policy(args.dtype, args.keep_float32))
        print(pipeline.table())
    options = dataclasses.replace(options, provenance=graph.meta["provenance"])
    files = emit(graph, args.output, options)
    elapsed = time.perf_counter() - t0
    sizes = ", ".join(f"{f} ({os.path.getsize(f) / 1e6:.1f} MB)" for f in files)
    print(f"wrote {sizes} for target {options.target} in {elapsed:.1f} s")
    return 0


QUANT_TARGETS = ("onnx", "llvm")


def refuse_overwriting_inputs(args: argparse.Namespace, target: str) -> None:
    """An output that is one of the inputs is refused before anything is built: ``-o r50.so`` writes
    ``r50.json`` beside it, which would replace a qparams file ``--quantize r50.json`` was read from."""
    from resdsl.backends.tvm.artifact import sidecar_path
    from resdsl.errors import ResdslError

    written = [args.output] + ([sidecar_path(args.output)] if target in ("llvm", "cuda") else [])
    inputs = {"--quantize": getattr(args, "quantize", None), "--weights": getattr(args, "weights", None)}
    inputs["the model"] = getattr(args, "model_file", None)
    for out in written:
        for flag, path in inputs.items():
            if path and os.path.exists(path) and os.path.realpath(out) == os.path.realpath(path):
                raise ResdslError(
                    f"compiling to {args.output!r} would overwrite {path!r} ({flag})",
                    hint="choose another -o name (a TVM library OUT.so also writes OUT.json)",
                )


def quantized(graph, path: str, target: str):
    """The int8 graph: refused up front for a target that cannot build it, or another model's qparams."""
    from resdsl import quant
    from resdsl.errors import ResdslError

    if target not in QUANT_TARGETS:
        raise ResdslError(f"--quantize builds for {', '.join(QUANT_TARGETS)}, not {target}", hint="use --target onnx")
    return quant.apply_qparams(graph, quant.read_qparams(path), repr(path))

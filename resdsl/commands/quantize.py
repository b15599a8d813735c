"""``resdsl quantize``: calibrate a model's activation ranges for static int8 and write a qparams file.

It prints what quantization costs: per layer the SQNR (dB) of the int8 values against the float
ones, and for each output its SQNR and top-1 agreement with float32 on held-out inputs.
"""

from __future__ import annotations

import argparse
import time

from resdsl.errors import ResdslError

from . import add_model_args, add_pass_args, compile_request, nonnegative_int, output_file, positive_int

HELD_OUT = 4  # held-out random inputs for the report, when calibrating on random ones


def add_parser(sub) -> None:
    p = sub.add_parser("quantize", help="calibrate static int8 quantization; write MODEL.qparams.json")
    add_model_args(p)
    add_pass_args(p)
    p.add_argument("--weights", metavar="FILE", help="load parameters from .safetensors, .npz or .pt")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--calib", metavar="DIR", help="a folder of .npy inputs (one sample, or a batch, a file)")
    src.add_argument("--calib-random", type=positive_int, metavar="N", help="N standard-normal inputs")
    p.add_argument(
        "--method",
        default="minmax",
        choices=("minmax", "percentile", "entropy"),
        help="range estimate (default minmax)",
    )
    p.add_argument(
        "--join",
        default="requant",
        choices=("requant", "float"),
        help="residual join: requant (branch and sum rounded; all-integer in ONNX Runtime) or float",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed for --calib-random (default 0)")
    p.add_argument("-o", "--output", required=True, type=output_file, metavar="OUT", help="the qparams .json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resdsl import quant

    if not args.output.endswith(".json"):
        raise ResdslError(f"output {args.output!r} must end in .json", hint="e.g. -o model.qparams.json")
    t0 = time.perf_counter()
    req = compile_request(args)
    graph = quant.float_graph(req)
    feeds = quant.load_calibration(graph, args.calib, args.calib_random, args.seed)
    if args.calib_random:
        held = quant.load_calibration(graph, None, HELD_OUT, args.seed + 1)
    else:  # the last quarter of the files is held out, when there are enough
        cut = len(feeds) - len(feeds) // 4 if len(feeds) >= 4 else len(feeds)
        feeds, held = feeds[:cut], feeds[cut:] or feeds
    qparams = quant.calibrate(graph, feeds, args.method)
    report = quant.measure(graph, qparams, held, args.join)
    print(f"{'layer':<40} SQNR dB")
    for name, db in report.layers:
        print(f"{name:<40} {db:7.1f}")
    for name, (db, agree) in report.outputs.items():
        print(
            f"output {name}: SQNR {db:.1f} dB, top-1 agreement with float32 {agree:.1%} on {len(held)} held-out inputs"
        )
    pipeline = {
        "level": req.level,
        "passes": req.passes,
        "shortcut": req.shortcut,
        "residual_scale": req.residual_scale,
    }
    quant.write_qparams(args.output, graph, qparams, args.method, args.join, pipeline)
    elapsed = time.perf_counter() - t0
    print(f"wrote {args.output} ({len(qparams)} ranges, {args.method}, {len(feeds)} inputs) in {elapsed:.1f} s")
    return 0

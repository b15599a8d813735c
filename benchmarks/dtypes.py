"""float16 and bfloat16 TVM llvm modules against the float32 one, in one process (issue 12).

    .venv/bin/python benchmarks/dtypes.py [--models resnet18,resnet50] [--image-size 224] [--repeats 10]

Each dtype is compiled as ``resdsl compile --dtype D --target llvm --batch 1`` compiles it
(batch norm folded in float32, then ``convert_dtype``; the shipped tile book applies), timed
in shuffled blocks (``cpu_common.block_medians``: median of the block medians), and its
output compared with the interpreter in the same dtype and with the float32 interpreter.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cpu_common import HERE, block_medians  # noqa: E402

DTYPES = ("float32", "float16", "bfloat16")


def build(model: str, image_size: int, dtype: str):
    """``(graph, vm main, compile seconds)`` of the llvm module for ``dtype`` at batch 1."""
    import tvm
    from resdsl.backends.tvm.build import compile_graph, tile_books
    from resdsl.backends.tvm.target import llvm_target
    from tvm import relax

    from resdsl.driver import CompileRequest, build_graph

    path = os.path.join(HERE, "..", "examples", "resnet.py")
    graph, _ = build_graph(CompileRequest(path, model, {"image_size": image_size}, dtype=dtype))
    tdict = llvm_target()
    t0 = time.perf_counter()
    ex = compile_graph(graph, tdict, batch=1, books=tile_books(tdict))
    return graph, relax.VirtualMachine(ex, tvm.cpu())["main"], time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18,resnet50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import tvm
    from resdsl.backends.tvm.target import host_cpu

    from resdsl.interpreter import interpret, random_inputs
    from resdsl.numerics import max_rel_error

    print(f"cpu {host_cpu()}, {os.cpu_count()} cores, batch 1, {args.image_size}x{args.image_size}")
    print(
        f"{'model':<9} {'dtype':<9} {'compile s':>9} {'ms':>8} {'vs f32':>7} {'err same dtype':>15} {'err vs f32':>11}"
    )
    for model in args.models.split(","):
        runs, rows = {}, {}
        reference = None
        for dtype in DTYPES:
            graph, main, compile_s = build(model, args.image_size, dtype)
            feeds = random_inputs(graph, 1, 0)
            want = next(iter(interpret(graph, feeds).values()))
            if dtype == "float32":
                reference = want
            x = [tvm.runtime.tensor(np.ascontiguousarray(v)) for v in feeds.values()]
            got = main(*x)[0].numpy()
            rows[dtype] = (compile_s, max_rel_error(got, want), max_rel_error(got, reference))
            runs[dtype] = lambda main=main, x=x: main(*x)
        blocks = block_medians(runs, args.rounds, args.repeats)
        ms = {k: 1e3 * float(np.median(v)) for k, v in blocks.items()}
        for dtype in DTYPES:
            compile_s, err, err32 = rows[dtype]
            print(
                f"{model:<9} {dtype:<9} {compile_s:9.1f} {ms[dtype]:8.2f} {ms[dtype] / ms['float32']:7.2f} "
                f"{err:15.1e} {err32:11.1e}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

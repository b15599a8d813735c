"""float16 and bfloat16 TVM llvm modules against the float32 one, in one process (issue 12).

    .venv/bin/python benchmarks/dtypes.py [--models resnet18,resnet50] [--image-size 224] [--repeats 10]

Each dtype is compiled as ``resdsl compile --dtype D --target llvm --batch 1`` compiles it
(batch norm folded in float32, then ``convert_dtype``; the shipped tile book applies), timed
in shuffled blocks (``cpu_common.block_medians``: median of the block medians), and its
output compared with the interpreter in the same dtype and with the float32 interpreter.
``compare`` is also the suite's dtypes section (``run.py --only dtypes``, in a child process).
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


def build(model: str, image_size: int, dtype: str, weights: str | None = None):
    """``(graph, vm main, compile seconds)`` of the llvm module for ``dtype`` at batch 1."""
    import tvm
    from resdsl.backends.tvm.build import compile_graph, tile_books
    from resdsl.backends.tvm.target import llvm_target
    from tvm import relax

    from resdsl.driver import CompileRequest, build_graph

    path = os.path.join(HERE, "..", "examples", "resnet.py")
    graph, _ = build_graph(CompileRequest(path, model, {"image_size": image_size}, dtype=dtype, weights=weights))
    tdict = llvm_target()
    t0 = time.perf_counter()
    ex = compile_graph(graph, tdict, batch=1, books=tile_books(tdict))
    return graph, relax.VirtualMachine(ex, tvm.cpu())["main"], time.perf_counter() - t0


def compare(model: str, image_size: int = 224, rounds: int = 5, repeats: int = 5, weights: str | None = None) -> list:
    """One record per dtype of ``DTYPES``: ``dtype``, ``compile_s``, ``ms`` (median of the block
    medians, all dtypes timed in one process), ``err`` (max relative error against the interpreter
    in the same dtype) and ``err_f32`` (against the float32 interpreter)."""
    import tvm

    from resdsl.interpreter import interpret, random_inputs
    from resdsl.numerics import max_rel_error

    runs, rows = {}, {}
    reference = None
    for dtype in DTYPES:
        graph, main, compile_s = build(model, image_size, dtype, weights)
        feeds = random_inputs(graph, 1, 0)
        want = next(iter(interpret(graph, feeds).values()))
        if dtype == "float32":
            reference = want
        x = [tvm.runtime.tensor(np.ascontiguousarray(v)) for v in feeds.values()]
        got = main(*x)[0].numpy()
        rows[dtype] = {"dtype": dtype, "compile_s": compile_s}
        rows[dtype].update(err=max_rel_error(got, want), err_f32=max_rel_error(got, reference))
        runs[dtype] = lambda main=main, x=x: main(*x)
    blocks = block_medians(runs, rounds, repeats)
    for dtype in DTYPES:
        rows[dtype]["ms"] = 1e3 * float(np.median(blocks[dtype]))
    return [rows[d] for d in DTYPES]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18,resnet50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from resdsl.backends.tvm.target import host_cpu

    print(f"cpu {host_cpu()}, {os.cpu_count()} cores, batch 1, {args.image_size}x{args.image_size}")
    print(
        f"{'model':<9} {'dtype':<9} {'compile s':>9} {'ms':>8} {'vs f32':>7} {'err same dtype':>15} {'err vs f32':>11}"
    )
    for model in args.models.split(","):
        rows = compare(model, args.image_size, args.rounds, args.repeats)
        base = rows[0]["ms"]
        for r in rows:
            print(
                f"{model:<9} {r['dtype']:<9} {r['compile_s']:9.1f} {r['ms']:8.2f} {r['ms'] / base:7.2f} "
                f"{r['err']:15.1e} {r['err_f32']:11.1e}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

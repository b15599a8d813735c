"""Direct vs Winograd F(m x m, 3 x 3) (the rule's m, or --m) for each distinct 3x3 stride-1 conv of ResNet-18/50 at 224x224,
batch 1: conv + bias + relu as the networks run it (then a global average pool, the same in both), both modules in one process, timed in
interleaved blocks (median of the block medians). Also the max relative error of each.

    .venv/bin/python benchmarks/winograd_shapes.py [--blocks 15] [--reps 20] [--m 4] [--shapes 56x32x32]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

SHAPES = [(56, 64, 64), (28, 128, 128), (14, 256, 256), (7, 512, 512)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=15)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--shapes", default=None, help="e.g. 56x64x64,7x512x512 (size x in x out)")
    ap.add_argument("--m", type=int, choices=(2, 4), help="force F(m x m, 3 x 3) instead of the rule's choice")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # TVM's default counts physical cores only
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    import tvm
    from cpu_common import block_medians
    from helpers import single_op
    from resdsl.backends.tvm import pipeline as tvm_pipeline
    from resdsl.backends.tvm import target as tvm_target
    from resdsl.backends.tvm import winograd
    from resdsl.backends.tvm.lower import lower
    from tvm import relax

    import resdsl
    from resdsl.numerics import max_rel_error

    rule = winograd.use_winograd
    if args.m:
        winograd.use_winograd = lambda shape: args.m
    shapes = SHAPES if not args.shapes else [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    target = tvm.target.Target(tvm_target.llvm_target())
    print(
        f"{'shape (HxW, C->K), m':<26}{'direct ms':>10}{'winograd ms':>12}{'ratio':>7}  err direct / winograd  compile s"
    )
    for size, cin, cout in shapes:
        attrs = {"dilation": 1, "groups": 1, "stride": 1, "padding": 1, "activation": "relu"}
        g = single_op("fused_conv", [("N", cin, size, size), "w", "b"], attrs, {"w": (cout, cin, 3, 3), "b": (cout,)})
        # Then a global average pool: the conv's output stays NHWC, as inside a network
        # (a graph output is transposed back to NCHW, which would fuse into the conv's last stage).
        g.outputs[:] = [("y", g.add_node("global_avg_pool", [g.outputs[0][1]], {}, name="gap"))]
        feeds = resdsl.random_inputs(g, 1, 0)
        want = next(iter(resdsl.interpret(g, feeds).values()))
        fns, errs, secs = [], [], []
        for wino in (False, True):
            t0 = time.perf_counter()
            with tvm.transform.PassContext(opt_level=3):
                ex = tvm.compile(lower(g, 1), target, relax_pipeline=tvm_pipeline.pipeline(target, winograd=wino))
            secs.append(time.perf_counter() - t0)
            vm = relax.VirtualMachine(ex, tvm.cpu())
            x = [tvm.runtime.tensor(v) for v in feeds.values()]
            errs.append(max_rel_error(vm["main"](*x)[0].numpy(), want))
            fns.append(lambda vm=vm, x=x: vm["main"](*x))
        blocks = block_medians(dict(enumerate(fns)), args.blocks, args.reps, shuffle=False)
        d, w = (1e3 * float(np.median(b)) for b in blocks.values())
        print(
            f"{size}x{size}, {cin}->{cout}, m={args.m or rule(winograd.ConvShape(size, size, cin, cout))}".ljust(26)
            + f"{d:10.3f}{w:12.3f}{w / d:7.2f}  {errs[0]:.1e} / {errs[1]:.1e}   {secs[0]:.1f} / {secs[1]:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

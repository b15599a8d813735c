"""What each CPU optimisation buys, end to end: ONNX Runtime against resdsl's llvm module with
direct convolutions, with Winograd, and with Winograd and the shipped tile book (what
``resdsl compile --target llvm`` builds), in one process on one input.

    .venv/bin/python benchmarks/cpu_variants.py --model resnet50 [--rounds 16] [--reps 6]

Each round runs every variant in a block of its own (warm-up, then ``--reps`` timed runs,
their median), in a shuffled order, after a pause: both runtimes' worker threads spin
after a run and would steal each other's cores. The figure to read is the median over
rounds of each round's ratio to ORT: on a shared machine the absolute times move by
2x from minute to minute, a ratio taken within a round much less.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50", help="resnet18, resnet50, ... or vit")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--settle", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # TVM's default counts physical cores only

    import tvm
    from cpu_common import block_medians, example_graph, ort_cpu_session
    from resdsl.backends.tvm import pipeline as tvm_pipeline
    from resdsl.backends.tvm import target as tvm_target
    from resdsl.backends.tvm.build import tile_books
    from resdsl.backends.tvm.lower import lower
    from resdsl.backends.tvm.tiles.book import merged_tiles
    from tvm import relax

    from resdsl.numerics import max_rel_error

    graph, feeds, want = example_graph(args.model, args.image_size)
    sess = ort_cpu_session(graph, args.threads)
    runs = {"ORT": lambda: sess.run(None, feeds)}
    print(f"{args.model} batch 1, {args.threads} threads, cpu {tvm_target.host_cpu()}")
    print(f"{'ORT':<28} max_rel_error {max_rel_error(sess.run(None, feeds)[0], want):.1e}")
    tdict = tvm_target.llvm_target()
    target = tvm.target.Target(tdict)
    book = merged_tiles(tile_books(tdict, None))
    variants = {
        "resdsl direct": (False, None),
        "resdsl winograd": (True, None),
        "resdsl winograd + tile book": (True, book),
    }
    for name, (winograd, tiles) in variants.items():
        t0 = time.perf_counter()
        with tvm.transform.PassContext(opt_level=3):
            pipeline = tvm_pipeline.pipeline(target, tiles=tiles, winograd=winograd)
            ex = tvm.compile(lower(graph, 1), target, relax_pipeline=pipeline)
        vm = relax.VirtualMachine(ex, tvm.cpu())
        x = [tvm.runtime.tensor(v) for v in feeds.values()]
        err = max_rel_error(vm["main"](*x)[0].numpy(), want)
        print(f"{name:<28} max_rel_error {err:.1e}, compile {time.perf_counter() - t0:.1f} s")
        runs[name] = lambda vm=vm, x=x: vm["main"](*x)
    blocks = block_medians(runs, args.rounds, args.reps, args.settle)
    ort = np.array(blocks["ORT"])
    print(f"{'':<28} {'median ms':>9}  {'/ORT, median of rounds':>22}  (p25..p75)")
    for name, b in blocks.items():
        r = np.array(b) / ort
        print(
            f"{name:<28} {1e3 * np.median(b):9.2f}  {np.median(r):22.2f}  "
            f"({np.percentile(r, 25):.2f}..{np.percentile(r, 75):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

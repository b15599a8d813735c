"""TVM on the CPU against ONNX Runtime, in one process: TVM's default pipeline, resdsl's
schedules (``backends/tvm/pipeline.py``) and, with --db, a tuned database.

    .venv/bin/python benchmarks/tvm_cpu.py --model resnet50 [--default] [--symbolic] [--db DIR] [--threads 2]
    .venv/bin/python benchmarks/tvm_cpu.py --model vit       # ViT-Ti/16 from examples/transformer.py

Each row times ORT, then TVM, in blocks (median of --repeats after warm-up). Outputs are checked against the reference interpreter.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _times(fn, reps: int, warmup: int = 2) -> list[float]:
    """Run ``fn`` in a block of its own: ORT's and TVM's thread pools both spin after a run,
    and interleaving them makes each one's workers steal the other's cores."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--default", action="store_true", help="also time TVM's default pipeline (slow)")
    ap.add_argument("--symbolic", action="store_true", help="also time the symbolic-batch module users get by default")
    ap.add_argument("--db", help="MetaSchedule database from 'resdsl tune --batch 1'")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)

    import tvm
    from cpu_common import example_graph, ort_cpu_session
    from resdsl.backends.tvm import pipeline as tvm_pipeline
    from resdsl.backends.tvm import target as tvm_target
    from resdsl.backends.tvm.lower import lower
    from tvm import relax

    from resdsl.numerics import max_rel_error

    graph, feeds, want = example_graph(args.model, args.image_size)
    sess = ort_cpu_session(graph, args.threads)

    variants = [("tvm default", {"kind": "llvm"}, None, 1)] if args.default else []
    variants.append(("tvm resdsl schedules", tvm_target.llvm_target(), tvm_pipeline.pipeline, 1))
    if args.symbolic:
        variants.append(("tvm resdsl batch N", tvm_target.llvm_target(), tvm_pipeline.pipeline, None))
    if args.db:
        variants.append(("tvm tuned db", tvm_target.llvm_target(), tvm_pipeline.pipeline, 1))
    print(
        f"{args.model} batch 1, {args.image_size}x{args.image_size}, {args.threads} threads, cpu {tvm_target.host_cpu()}"
    )
    for name, tdict, make, batch in variants:
        target = tvm.target.Target(tdict)
        t0 = time.perf_counter()
        with tvm.transform.PassContext(opt_level=3):
            pipe = None if make is None else make(target, args.db if name == "tvm tuned db" else None)
            ex = (
                tvm.compile(lower(graph, batch), target, relax_pipeline=pipe)
                if pipe
                else tvm.compile(lower(graph, batch), target)
            )
        compile_s = time.perf_counter() - t0
        vm = relax.VirtualMachine(ex, tvm.cpu())
        x = [tvm.runtime.tensor(v) for v in feeds.values()]
        err = max_rel_error(vm["main"](*x)[0].numpy(), want)
        reps = 3 if make is None else args.repeats
        t_ort = _times(lambda: sess.run(None, feeds), reps)
        t_tvm = _times(lambda vm=vm, x=x: vm["main"](*x), reps)
        o, t = 1e3 * float(np.median(t_ort)), 1e3 * float(np.median(t_tvm))
        print(
            f"{name:<22} compile {compile_s:6.1f} s  max_rel_error {err:.1e}  "
            f"ORT {o:8.2f} ms  TVM {t:8.2f} ms  TVM/ORT {t / o:5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

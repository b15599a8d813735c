"""ResNet end to end on the CPU: ONNX Runtime vs resdsl's llvm module without and with Winograd,
one process, same input, timed in interleaved blocks with a settle pause between them (both
runtimes' worker threads spin after a run and would steal each other's cores).

    .venv/bin/python benchmarks/winograd_e2e.py --model resnet50 [--rounds 8] [--reps 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # TVM's default counts physical cores only

    import onnxruntime as ort
    import tvm
    from resdsl.backends import EmitOptions, emit, tvm_schedule
    from resdsl.backends.tvm_lower import lower
    from tvm import relax

    import resdsl
    from resdsl.driver import CompileRequest, build_graph
    from resdsl.numerics import max_rel_error

    here = os.path.dirname(os.path.abspath(__file__))
    req = CompileRequest(os.path.join(here, "..", "examples", "resnet.py"), args.model, {"image_size": args.image_size})
    graph, _ = build_graph(req)
    feeds = resdsl.random_inputs(graph, 1, 0)
    want = next(iter(resdsl.interpret(graph, feeds).values()))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        emit(graph, path, EmitOptions(target="onnx"))
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    runs = {"ORT": lambda: sess.run(None, feeds)}
    print(
        f"{args.model} batch 1, {args.image_size}x{args.image_size}, {args.threads} threads, cpu {tvm_schedule.host_cpu()}"
    )
    print(f"ORT max_rel_error {max_rel_error(sess.run(None, feeds)[0], want):.1e}")
    target = tvm.target.Target(tvm_schedule.llvm_target())
    for wino in (False, True):
        t0 = time.perf_counter()
        with tvm.transform.PassContext(opt_level=3):
            ex = tvm.compile(lower(graph, 1), target, relax_pipeline=tvm_schedule.pipeline(target, winograd=wino))
        compile_s = time.perf_counter() - t0
        vm = relax.VirtualMachine(ex, tvm.cpu())
        x = [tvm.runtime.tensor(v) for v in feeds.values()]
        name = "resdsl winograd" if wino else "resdsl direct"
        print(f"{name}: compile {compile_s:.1f} s, max_rel_error {max_rel_error(vm['main'](*x)[0].numpy(), want):.1e}")
        runs[name] = lambda vm=vm, x=x: vm["main"](*x)
    blocks: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            time.sleep(args.settle)
            fn()
            ts = []
            for _ in range(args.reps):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            blocks[name].append(float(np.median(ts)))
    ort_ms = 1e3 * float(np.median(blocks["ORT"]))
    for name, b in blocks.items():
        ms = 1e3 * float(np.median(b))
        print(f"{name:<16} {ms:8.2f} ms  (blocks {1e3 * min(b):.2f}..{1e3 * max(b):.2f})  / ORT {ms / ort_ms:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build ResNets with the TVM backend, check them against the reference interpreter, and time
them next to ONNX Runtime on the same device.

    python benchmarks/gpu_check.py                 # CUDA: resnet18 and resnet50 at 224x224
    python benchmarks/gpu_check.py --cpu           # the same on the CPU (--target llvm vs ORT CPU)
    python benchmarks/gpu_check.py --models resnet18 --image-size 64 --repeats 5

Latency is the median of ``--repeats`` runs after ``--warmup`` runs, each run taking NumPy
inputs and returning NumPy outputs (so host/device copies are included, for both runtimes).
Without a GPU (and without --cpu) it says so and exits 0. Exit status 1 means a model's
outputs differ from the interpreter by more than the tolerance. Nothing here is asserted
by the test suite: numbers are printed, not judged.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from resdsl.backends import EmitOptions, emit, open_artifact
from resdsl.passes import pipeline, run_passes

import resdsl
from resdsl.errors import ResdslError
from resdsl.numerics import TOLERANCE, max_rel_error

RESNET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "resnet.py")


def gpu_arch() -> str | None:
    """``sm_XY`` of cuda(0), or None when TVM sees no GPU."""
    import tvm

    dev = tvm.cuda(0)
    if not dev.exist:
        return None
    return "sm_" + dev.compute_version.replace(".", "")


def latency_ms(runner, feeds: dict[str, np.ndarray], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        runner.run(feeds)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner.run(feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def worst_error(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    return max(max_rel_error(got.get(k), v) if k in got else float("inf") for k, v in want.items())


def check_model(name: str, args: argparse.Namespace, arch: str | None, workdir: str) -> bool:
    """Build, check and time one model with TVM, then ONNX Runtime; True when TVM is within tolerance."""
    device = "cpu" if args.cpu else "cuda"
    graph = resdsl.load(RESNET, name, image_size=args.image_size)
    graph = run_passes(graph, pipeline(args.level)).graph
    feeds = resdsl.random_inputs(graph, batch=args.batch, seed=0)
    want = resdsl.interpret(graph, feeds)
    target = "llvm" if args.cpu else "cuda"

    path = os.path.join(workdir, f"{name}_{target}.so")
    t0 = time.perf_counter()
    emit(graph, path, EmitOptions(target=target, arch=arch or "sm_90"))
    compile_s = time.perf_counter() - t0
    runner = open_artifact(path, device=device)
    err = worst_error(runner.run(feeds), want)
    ok = err < TOLERANCE
    tvm_ms = latency_ms(runner, feeds, args.warmup, args.repeats)
    print(
        f"{name}: TVM [{runner.device}] compiled in {compile_s:.1f} s, max rel error {err:.2e} "
        f"({'OK' if ok else 'FAIL'}), median {tvm_ms:.2f} ms"
    )

    onnx_path = os.path.join(workdir, f"{name}.onnx")
    try:
        emit(graph, onnx_path, EmitOptions(target="onnx"))
        ort = open_artifact(onnx_path, device=device)
    except ResdslError as e:
        print(f"{name}: ONNX Runtime not compared: {e.render()}")
        return ok
    ort_err = worst_error(ort.run(feeds), want)
    ort_ms = latency_ms(ort, feeds, args.warmup, args.repeats)
    print(
        f"{name}: ORT [{ort.device}] max rel error {ort_err:.2e}, median {ort_ms:.2f} ms; "
        f"TVM / ORT = {tvm_ms / ort_ms:.1f}x"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,resnet50", help="comma-separated models of examples/resnet.py")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--level", type=int, default=2, help="optimisation level of the graph passes (default 2)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--arch", help="CUDA architecture (default: that of cuda(0))")
    p.add_argument("--cpu", action="store_true", help="check --target llvm on the CPU instead of CUDA")
    args = p.parse_args(argv)

    arch = None
    if not args.cpu:
        arch = args.arch or gpu_arch()
        if arch is None:
            print(
                "gpu_check: no GPU here (tvm.cuda(0) does not exist); nothing to check. "
                "Run it on a machine with an NVIDIA GPU, or pass --cpu."
            )
            return 0
    ok = True
    with tempfile.TemporaryDirectory(prefix="resdsl-gpu-check-") as workdir:
        for name in args.models.split(","):
            try:
                ok &= check_model(name.strip(), args, arch, workdir)
            except ResdslError as e:
                print(f"{name}: FAIL: {e.render()}")
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

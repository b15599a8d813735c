"""Build ResNets with the TVM backend, check them against the reference interpreter, and time
them next to ONNX Runtime on the same device.

    python benchmarks/gpu_check.py                 # CUDA: resnet18 and resnet50 at 224x224, batch 1 and 8
    python benchmarks/gpu_check.py --cpu           # the same on the CPU (--target llvm vs ORT CPU)
    python benchmarks/gpu_check.py --models resnet18 --image-size 64 --batches 2 --repeats 5
    python benchmarks/gpu_check.py --variants resdsl,dlight,tvm-default

On CUDA each model is compiled once per variant (symbolic batch, as ``resdsl compile``
does) and run at every ``--batches`` size:

- ``resdsl``: the CUDA pipeline as shipped: NHWC, resdsl's implicit-GEMM rule
  (``backends/tvm/rules/cuda_gemm.py``, ``cuda_direct.py``) for convolutions and matmuls, DLight for the rest;
- ``dlight``: the same pipeline with resdsl's rule off (``pipeline(cuda_rules=False)``):
  DLight's default GPU rules schedule every kernel;
- ``tvm-default``: TVM's own default CUDA pipeline (NCHW, DLight), what ``--target cuda``
  compiled before resdsl had CUDA schedules;

and ``ort``: the resdsl ONNX file in ONNX Runtime's CUDAExecutionProvider (which may use
TF32 convolutions: its error is printed, not judged).

Latency is the median of ``--repeats`` runs after ``--warmup`` runs, each run taking NumPy
inputs and returning NumPy outputs (so host/device copies are included, for every runtime).
Without a GPU (and without --cpu) it says so and exits 0. Exit status 1 means a TVM module's
outputs differ from the interpreter by more than the tolerance (or it failed to build).
Nothing here is asserted by the test suite: numbers are printed, not judged. The default run
(two models, three variants, two batches) should take 3-5 minutes on a 16-core machine: six
compiles of 15-25 s each (measured on 2 cores) dominate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from resdsl.backends import OnnxOptions, emit, open_artifact
from resdsl.passes import pipeline, run_passes

import resdsl
from resdsl.errors import ResdslError
from resdsl.numerics import TOLERANCE, max_rel_error

RESNET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "resnet.py")
VARIANTS = ("resdsl", "dlight", "tvm-default")


def gpu_arch() -> str | None:
    """``sm_XY`` of cuda(0), or None when TVM sees no GPU."""
    import tvm

    dev = tvm.cuda(0)
    if not dev.exist:
        return None
    return "sm_" + dev.compute_version.replace(".", "")


class VmRunner:
    """A compiled Relax module in the VM, run as ``TvmRunner`` runs an artifact: NumPy in, NumPy out."""

    def __init__(self, executable, graph: resdsl.Graph, device) -> None:
        from tvm import relax

        self.main = relax.VirtualMachine(executable, device)["main"]
        self.device = device
        self.inputs = [graph.node(i).attrs["name"] for i in graph.inputs]
        self.outputs = [name for name, _ in graph.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tvm

        args = [tvm.runtime.tensor(np.ascontiguousarray(feeds[name]), self.device) for name in self.inputs]
        return {name: value.numpy() for name, value in zip(self.outputs, self.main(*args))}


def build_tvm(graph: resdsl.Graph, variant: str, target_dict: dict) -> VmRunner:
    """Compile ``graph`` (symbolic batch) with the pipeline of ``variant``."""
    import tvm
    from resdsl.backends.tvm import pipeline as tvm_pipeline
    from resdsl.backends.tvm.lower import lower
    from tvm import relax

    target = tvm.target.Target(target_dict)
    if variant == "tvm-default":
        relax_pipeline = relax.get_default_pipeline(target)
    else:
        relax_pipeline = tvm_pipeline.pipeline(target, cuda_rules=variant == "resdsl")
    with tvm.transform.PassContext(opt_level=3):
        executable = tvm.compile(lower(graph, None), target, relax_pipeline=relax_pipeline)
    device = tvm.cuda(0) if target.kind.name == "cuda" else tvm.cpu(0)
    return VmRunner(executable, graph, device)


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
    """Build every variant, check each at every batch size against the interpreter and time it;
    then ONNX Runtime. True when every TVM variant built and is within tolerance."""
    from resdsl.backends.tvm.target import llvm_target

    graph = run_passes(resdsl.load(RESNET, name, image_size=args.image_size), pipeline(args.level)).graph
    batches = [int(b) for b in args.batches.split(",")]
    cases = {}
    for batch in batches:
        feeds = resdsl.random_inputs(graph, batch=batch, seed=batch)
        cases[batch] = (feeds, resdsl.interpret(graph, feeds))

    if args.cpu:
        target, variants = llvm_target(), ["resdsl"]
    else:
        target = {"kind": "cuda", "arch": arch, "host": {"kind": "llvm"}}
        variants = [v.strip() for v in args.variants.split(",")]
    runners, ok = {}, True
    for variant in variants:
        t0 = time.perf_counter()
        try:
            runners[variant] = build_tvm(graph, variant, target)
        except Exception as e:  # a benchmark reports a failed build and goes on with the rest
            print(f"{name}: {variant}: FAIL: could not build: {str(e).splitlines()[-1] if str(e) else e!r}")
            ok = False
            continue
        print(f"{name}: {variant}: compiled for {target['kind']} in {time.perf_counter() - t0:.1f} s")
    try:
        onnx_path = os.path.join(workdir, f"{name}.onnx")
        emit(graph, onnx_path, OnnxOptions())
        runners["ort"] = open_artifact(onnx_path, device="cpu" if args.cpu else "cuda")
        print(f"{name}: ort: {runners['ort'].device}")
    except ResdslError as e:
        print(f"{name}: ONNX Runtime not compared: {e.render()}")

    for batch, (feeds, want) in cases.items():
        cells, times = [], {}
        for variant, runner in runners.items():
            try:
                err = worst_error(runner.run(feeds), want)
                times[variant] = latency_ms(runner, feeds, args.warmup, args.repeats)
            except Exception as e:
                print(f"{name} b{batch}: {variant}: FAIL: {str(e).splitlines()[-1] if str(e) else e!r}")
                ok &= variant == "ort"
                continue
            good = err < TOLERANCE
            if variant != "ort":
                ok &= good
            verdict = "OK" if good else ("TF32?" if variant == "ort" else "FAIL")
            cells.append(f"{variant} {times[variant]:.2f} ms (err {err:.1e} {verdict})")
        ratios = [f"{v}/resdsl {times[v] / times['resdsl']:.2f}x" for v in times if v != "resdsl" and "resdsl" in times]
        print(f"{name} b{batch}: " + " | ".join(cells) + (f"; {', '.join(ratios)}" if ratios else ""))
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,resnet50", help="comma-separated models of examples/resnet.py")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"CUDA pipelines to compare, of {', '.join(VARIANTS)}"
    )
    p.add_argument("--level", type=int, default=2, help="optimisation level of the graph passes (default 2)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--arch", help="CUDA architecture (default: that of cuda(0))")
    p.add_argument("--cpu", action="store_true", help="check --target llvm on the CPU instead of CUDA")
    args = p.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")

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

"""The main job behind `make demo`: compile resnet50 to ONNX, run it in ONNX Runtime, check it.

Each step is the same as the CLI's (`resdsl compile`, `resdsl run --check`); this
script just strings them together and prints the figures a user looks at first.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
from resdsl.backends import CudaOptions, LlvmOptions, OnnxOptions, emit, open_artifact

import resdsl
from resdsl.driver import CompileRequest, build_graph

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_FILE = os.path.join(HERE, "..", "examples", "resnet.py")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="resdsl-demo-") as out_dir:
        return demo(out_dir)


def demo(out_dir: str) -> int:
    artifact = os.path.join(out_dir, "resnet50.onnx")
    t0 = time.perf_counter()
    graph, pipeline = build_graph(CompileRequest(MODEL_FILE, "resnet50", verify=True))
    print(pipeline.table())
    emit(graph, artifact, OnnxOptions("onnx-ort", provenance=graph.meta["provenance"]))
    print(
        f"compiled resnet50 -> {artifact} ({os.path.getsize(artifact) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s"
    )

    runner = open_artifact(artifact)
    image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    t0 = time.perf_counter()
    logits = runner.run({"image": image})["logits"]
    print(f"ONNX Runtime providers: {runner.device}; first run {1e3 * (time.perf_counter() - t0):.1f} ms")
    print(f"output logits: shape {logits.shape}")
    print(f"top-5 classes: {np.argsort(-logits[0])[:5].tolist()}")

    reference = resdsl.interpret(resdsl.load(MODEL_FILE, "resnet50"), {"image": image})["logits"]
    err = resdsl.max_rel_error(logits, reference)
    print(f"max relative error vs reference interpreter: {err:.2e} ({'OK' if err < 1e-4 else 'FAILED'})")
    if err >= 1e-4:
        return 1
    return tvm_demo(graph, image, reference, out_dir)


def tvm_demo(graph, image: np.ndarray, reference: np.ndarray, out_dir: str) -> int:
    """The TVM targets: build resnet50 for CUDA (no GPU needed to compile) and run the CPU module."""
    cuda = os.path.join(out_dir, "resnet50_cuda.so")
    t0 = time.perf_counter()
    emit(graph, cuda, CudaOptions(arch="sm_90", provenance=graph.meta["provenance"]))
    print(f"compiled resnet50 for cuda sm_90 -> {os.path.basename(cuda)} in {time.perf_counter() - t0:.1f} s")

    cpu = os.path.join(out_dir, "resnet50_llvm.so")
    t0 = time.perf_counter()
    emit(graph, cpu, LlvmOptions(provenance=graph.meta["provenance"]))
    print(f"compiled resnet50 for llvm -> {os.path.basename(cpu)} in {time.perf_counter() - t0:.1f} s")
    runner = open_artifact(cpu)
    t0 = time.perf_counter()
    logits = runner.run({"image": image})["logits"]
    err = resdsl.max_rel_error(logits, reference)
    print(
        f"TVM on {runner.device}: first run {1e3 * (time.perf_counter() - t0):.0f} ms, top-5 {np.argsort(-logits[0])[:5].tolist()}"
    )
    print(f"max relative error vs reference interpreter: {err:.2e} ({'OK' if err < 1e-4 else 'FAILED'})")
    return 0 if err < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())

"""What the CPU benchmark scripts share: the example model with its input and reference output,
an ONNX Runtime CPU session on resdsl's ONNX, and block-wise timing."""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def example_graph(model: str, image_size: int = 224):
    """``(graph, feeds, reference output)`` of a zoo model at batch 1 (``vit``: ViT-Ti/16)."""
    import resdsl
    from resdsl.driver import CompileRequest, build_graph

    example = "transformer.py" if model == "vit" else "resnet.py"
    kwargs = {} if model == "vit" else {"image_size": image_size}
    graph, _ = build_graph(CompileRequest(os.path.join(HERE, "..", "examples", example), model, kwargs))
    feeds = resdsl.random_inputs(graph, 1, 0)
    return graph, feeds, next(iter(resdsl.interpret(graph, feeds).values()))


def ort_cpu_session(graph, threads: int):
    """ONNX Runtime's CPU provider on resdsl's standard ONNX of ``graph``."""
    import onnxruntime as ort
    from resdsl.backends import OnnxOptions, emit

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        emit(graph, path, OnnxOptions())
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def block_medians(
    runs: dict[str, Callable[[], object]], rounds: int, reps: int, settle: float = 0.0, shuffle: bool = True
) -> dict[str, list[float]]:
    """Per run, the median seconds of each of ``rounds`` blocks of ``reps`` timed calls.

    Each block starts with an untimed call after ``settle`` seconds, in a shuffled order
    per round: two runtimes' spinning worker threads would otherwise steal each other's
    cores, and drift on a shared machine would favour whoever runs first.
    """
    blocks: dict[str, list[float]] = {k: [] for k in runs}
    order = list(runs)
    for _ in range(rounds):
        if shuffle:
            random.shuffle(order)
        for name in order:
            fn = runs[name]
            time.sleep(settle)
            fn()
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            blocks[name].append(float(np.median(ts)))
    return blocks

"""int8 in ONNX Runtime: resdsl's QDQ model against ``onnxruntime.quantization.quantize_static``.

Both quantize resdsl's float32 -O2 ONNX of the same model with the same calibration inputs
(QDQ, per-channel int8 weights, uint8 activations, min-max ranges); they run side by side in
one process, interleaved, and the table gives the median latency of each, their ratio
(resdsl / ORT, lower is better) and each one's output SQNR against float32 on held-out inputs.

    .venv/bin/python benchmarks/quant.py [--models resnet18,resnet50] [--batches 1,8] [--calib 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _cpu() -> str:
    with open("/proc/cpuinfo") as f:
        name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.machine())
    return f"{name}, {os.cpu_count()} logical CPUs"


def _session(path: str, threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _ort_quantize(float_path: str, out_path: str, feeds: list[dict]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        float_path,
        out_path,
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    from resdsl.quant import sqnr_db

    return sqnr_db(ref, got)


def _median_ms(sessions: dict, feed: dict, runs: int) -> dict[str, float]:
    """Interleaved runs (one of each session per round), so that load on the machine hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(None, feed)
    for _ in range(runs):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feed)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(model: str, batches: list[int], calib: int, runs: int, threads: int | None, tmp: str) -> list[str]:
    from resdsl.backends import OnnxOptions, emit

    from resdsl import quant
    from resdsl.driver import CompileRequest, build_graph

    req = CompileRequest(os.path.join(HERE, "..", "examples", "resnet.py"), model)
    graph, _ = build_graph(req)
    prepared = quant.float_graph(req)
    feeds = quant.load_calibration(prepared, None, calib, seed=0)
    held = quant.load_calibration(prepared, None, 4, seed=1)
    t0 = time.perf_counter()
    qparams = quant.calibrate(prepared, feeds)
    t_cal = time.perf_counter() - t0
    doc = {"model": graph.name, "model_hash": quant.model_hash(prepared), "join": "requant", "pipeline": {}}
    doc["activations"] = {k: list(v) for k, v in qparams.items()}
    qgraph = quant.apply_qparams(graph, doc)
    paths = {k: os.path.join(tmp, f"{model}-{k}.onnx") for k in ("float32", "resdsl", "ort")}
    emit(graph, paths["float32"], OnnxOptions())
    emit(qgraph, paths["resdsl"], OnnxOptions())
    t0 = time.perf_counter()
    _ort_quantize(paths["float32"], paths["ort"], feeds)
    t_ort = time.perf_counter() - t0
    sessions = {k: _session(p, threads) for k, p in paths.items()}
    outs = {k: np.concatenate([s.run(None, f)[0] for f in held]) for k, s in sessions.items()}
    sq = {k: _sqnr(outs["float32"], outs[k]) for k in ("resdsl", "ort")}
    print(f"{model}: calibration {t_cal:.1f} s (resdsl interpreter), ORT quantize_static {t_ort:.1f} s", flush=True)
    rows = []
    rng = np.random.default_rng(2)
    for batch in batches:
        shape = (batch, *prepared.node(prepared.inputs[0]).shape[1:])
        feed = {prepared.node(prepared.inputs[0]).attrs["name"]: rng.standard_normal(shape).astype(np.float32)}
        ms = _median_ms(sessions, feed, runs if batch == 1 else max(runs // 3, 5))
        rows.append(
            f"| {model} | {batch} | {ms['float32']:.2f} | {ms['resdsl']:.2f} | {ms['ort']:.2f} | "
            f"{ms['resdsl'] / ms['ort']:.2f} | {sq['resdsl']:.1f} | {sq['ort']:.1f} |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,resnet50")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--calib", type=int, default=8, help="calibration inputs (random normal, seed 0)")
    p.add_argument("--runs", type=int, default=30, help="timed runs at batch 1 (a third at larger batches)")
    p.add_argument(
        "--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1: steadier on a loaded machine)"
    )
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            rows += bench(model, [int(b) for b in args.batches.split(",")], args.calib, args.runs, args.threads, tmp)
    print(f"\nMachine: {_cpu()}; onnxruntime {__import__('onnxruntime').__version__}; medians, interleaved\n")
    print(
        "| model | batch | float32 ms | resdsl int8 ms | ORT quantize_static ms | ratio | SQNR resdsl dB | SQNR ORT dB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

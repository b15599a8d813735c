"""int8 in ONNX Runtime: resdsl's QDQ model against ``onnxruntime.quantization.quantize_static``.

Both quantize resdsl's float32 -O2 ONNX of the same model with the same calibration inputs
(QDQ, per-channel int8 weights, uint8 activations, min-max ranges); they run side by side in
one process, interleaved, and the table gives the median latency of each, their ratio
(resdsl / ORT, lower is better) and each one's output SQNR against float32 on held-out inputs.

    .venv/bin/python benchmarks/quant.py [--models resnet18,resnet50] [--batches 1,8] [--calib 8]

``prepare`` (the files, the qparams file, the SQNRs) is also the suite's int8 section
(``run.py --only int8``), which times the files with the suite's own interleaved runs.
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


RESNET = os.path.join(HERE, "..", "examples", "resnet.py")
KINDS = ("float32", "resdsl", "ort")  # the three ONNX files: float32 -O2, resdsl's int8, ORT's int8


def prepare(model: str, tmp: str, calib: int = 8, held_out: int = 4, weights: str | None = None) -> dict:
    """Calibrate ``model`` and write its three ONNX files and its qparams file into ``tmp``.

    The qparams file is the one ``resdsl quantize --calib-random`` writes (minmax, requant
    joins), so ``resdsl compile --quantize`` takes it. Both int8 files quantize the same float32
    -O2 graph with the same ``calib`` inputs (seed 0); SQNR is measured on ``held_out`` other
    inputs (seed 1), batch 1 each. Returns plain data (the suite gets it from a child process):
    ``paths``, ``qparams``, ``held`` (an .npz of the held-out inputs, ``x0``.., and the float32
    outputs, ``y0``..), ``sqnr_db`` per int8 kind, ``calib_s`` and ``ort_quantize_s``.
    """
    from resdsl.backends import OnnxOptions, emit

    from resdsl import quant
    from resdsl.driver import CompileRequest, build_graph

    req = CompileRequest(RESNET, model, weights=weights)
    graph, _ = build_graph(req)
    prepared = quant.float_graph(req)
    feeds = quant.load_calibration(prepared, None, calib, seed=0)
    held = quant.load_calibration(prepared, None, held_out, seed=1)
    t0 = time.perf_counter()
    qparams = quant.calibrate(prepared, feeds)
    t_cal = time.perf_counter() - t0
    qpath = os.path.join(tmp, f"{model}.qparams.json")
    pipeline = {"level": req.level, "passes": None, "shortcut": None, "residual_scale": None}
    quant.write_qparams(qpath, prepared, qparams, "minmax", "requant", pipeline)
    qgraph = quant.apply_qparams(graph, quant.read_qparams(qpath), repr(qpath))
    paths = {k: os.path.join(tmp, f"{model}-{k}.onnx") for k in KINDS}
    emit(graph, paths["float32"], OnnxOptions())
    emit(qgraph, paths["resdsl"], OnnxOptions())
    t0 = time.perf_counter()
    _ort_quantize(paths["float32"], paths["ort"], feeds)
    t_ort = time.perf_counter() - t0
    sessions = {k: _session(p, None) for k, p in paths.items()}
    outs = {k: np.concatenate([s.run(None, f)[0] for f in held]) for k, s in sessions.items()}
    held_path = os.path.join(tmp, f"{model}-held.npz")
    arrays = {f"x{i}": next(iter(f.values())) for i, f in enumerate(held)}
    arrays.update({f"y{i}": y[None] for i, y in enumerate(outs["float32"])})
    np.savez(held_path, **arrays)
    return {
        "paths": paths,
        "qparams": qpath,
        "held": held_path,
        "sqnr_db": {k: _sqnr(outs["float32"], outs[k]) for k in ("resdsl", "ort")},
        "calib_s": t_cal,
        "ort_quantize_s": t_ort,
    }


def held_out_sqnr(held_path: str, run) -> float:
    """SQNR against float32 of ``run`` (one input array -> the output array) on ``prepare``'s held-out inputs."""
    data = np.load(held_path)
    n = sum(1 for k in data.files if k.startswith("x"))
    ref = np.concatenate([data[f"y{i}"] for i in range(n)])
    return _sqnr(ref, np.concatenate([run(data[f"x{i}"]) for i in range(n)]))


def bench(model: str, batches: list[int], calib: int, runs: int, threads: int | None, tmp: str) -> list[str]:
    """The table rows of ``model``: the three files side by side in this process, one round after another."""
    prep = prepare(model, tmp, calib)
    sq = prep["sqnr_db"]
    sessions = {k: _session(p, threads) for k, p in prep["paths"].items()}
    print(
        f"{model}: calibration {prep['calib_s']:.1f} s (resdsl interpreter), "
        f"ORT quantize_static {prep['ort_quantize_s']:.1f} s",
        flush=True,
    )
    rows = []
    rng = np.random.default_rng(2)
    first = sessions["float32"].get_inputs()[0]
    for batch in batches:
        feed = {first.name: rng.standard_normal((batch, *first.shape[1:])).astype(np.float32)}
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

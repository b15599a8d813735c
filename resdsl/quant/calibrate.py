"""Calibration: activation ranges of the -O2 float graph, the qparams file, and what quantization costs.

Calibration runs the reference interpreter over the graph the quantize pass will rewrite
(after folding and fusion, with the residual joins split by ``passes.quantize.split_joins``),
so a range is measured on exactly the value that gets rounded. The qparams file carries the
model's hash (model file, model name, arguments and weights), so quantizing another model with
it is an error, not a silently wrong artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from resdsl.atomic import atomic_path
from resdsl.driver import CompileRequest, build_graph
from resdsl.errors import ResdslError
from resdsl.interpreter import interpret
from resdsl.ir import Graph
from resdsl.passes.quantize import QParams, Quantize, grid_source, is_final_output, quantization_points, split_joins

METHODS = ("minmax", "percentile", "entropy")
FORMAT = "resdsl.qparams/1"
PERCENTILE = 99.99
BINS = 2048


def model_hash(graph: Graph) -> str:
    """What the ranges depend on: the provenance hash of the build, and the weights' bytes."""
    prov = graph.meta.get("provenance", {})
    digest = hashlib.sha256(str(prov.get("hash", "")).encode())
    for name in sorted(graph.parameters):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(graph.parameters[name]).tobytes())
    return digest.hexdigest()[:16]


def float_graph(req: CompileRequest) -> Graph:
    """The -O2 (or requested) float graph with its residual joins split: what calibration observes."""
    graph, _ = build_graph(req)
    graph = graph.copy()
    split_joins(graph)
    return graph


def load_calibration(graph: Graph, directory: str | None, random: int | None, seed: int = 0) -> list[dict]:
    """Feeds, one a batch: ``random`` standard-normal inputs, or the ``.npy`` files of ``directory``
    (each one input without the batch dimension, or a batch of them; the model has one input)."""
    (nid,) = graph.inputs if len(graph.inputs) == 1 else (None,)
    if nid is None:
        raise ResdslError("calibration needs a model with one input", hint="models with several are not supported")
    spec = graph.node(nid)
    name, sample = spec.attrs["name"], tuple(spec.shape[1:])
    if random is not None:
        rng = np.random.default_rng(seed)
        return [{name: rng.standard_normal((1, *sample)).astype(np.float32)} for _ in range(random)]
    if not os.path.isdir(directory):
        raise ResdslError(f"--calib {directory!r} is not a directory", hint="give a folder of .npy files")
    files = sorted(f for f in os.listdir(directory) if f.endswith(".npy"))
    if not files:
        raise ResdslError(f"--calib {directory!r} holds no .npy files", hint="save calibration inputs with np.save")
    feeds = []
    for f in files:
        path = os.path.join(directory, f)
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ResdslError(f"cannot read calibration input {path!r}: {e}") from None
        if arr.dtype != np.float32:
            raise ResdslError(f"calibration input {path!r} has dtype {arr.dtype}, the model takes float32")
        if arr.shape == sample:
            arr = arr[None]
        if arr.ndim != len(sample) + 1 or tuple(arr.shape[1:]) != sample:
            raise ResdslError(
                f"calibration input {path!r} has shape {arr.shape}; the model takes {sample} or (N, *{sample})"
            )
        feeds.append({name: arr})
    return feeds


@dataclass
class _Range:
    """What one value's range estimate needs: extremes, per-batch percentiles, a histogram of |x|."""

    method: str
    lo: float = np.inf
    hi: float = -np.inf
    n: int = 0
    plo: float = 0.0  # sums of per-batch percentiles (the mean is the range)
    phi: float = 0.0
    hist: np.ndarray | None = None  # entropy's second pass: |x| over [0, max(|lo|, |hi|)]

    def add(self, x: np.ndarray) -> None:
        self.lo, self.hi, self.n = min(self.lo, float(x.min())), max(self.hi, float(x.max())), self.n + 1
        if self.method == "percentile":
            lo, hi = np.percentile(x, [100 - PERCENTILE, PERCENTILE])
            self.plo, self.phi = self.plo + float(lo), self.phi + float(hi)

    def add_hist(self, x: np.ndarray) -> None:
        # exact zeros (relu, zero padding) say nothing about where to clip: left out
        h, _ = np.histogram(np.abs(x[x != 0]), BINS, (0.0, max(abs(self.lo), abs(self.hi), 1e-8)))
        self.hist = h if self.hist is None else self.hist + h

    def bounds(self) -> tuple[float, float]:
        if self.method == "percentile":
            return self.plo / self.n, self.phi / self.n
        if self.method == "entropy":
            t = entropy_threshold(self.hist, 256 if self.lo >= 0 else 128) * max(abs(self.lo), abs(self.hi))
            return max(self.lo, -t), min(self.hi, t)
        return self.lo, self.hi


def entropy_threshold(hist: np.ndarray, levels: int) -> float:
    """The clipping threshold (a fraction of the histogram's range) whose ``levels``-level
    quantization of the clipped distribution is closest in KL divergence (TensorRT's method)."""
    best, best_kl = len(hist), np.inf
    for i in range(levels, len(hist) + 1, 16):
        p = hist[:i].astype(np.float64)
        p[-1] += hist[i:].sum()  # clipped mass lands in the last kept bin
        idx = np.arange(i) * levels // i
        nonzero = hist[:i] > 0
        mass = np.bincount(idx, hist[:i].astype(np.float64), levels)
        count = np.bincount(idx, nonzero.astype(np.float64), levels)
        q = np.where(nonzero, (mass / np.maximum(count, 1))[idx], 0.0)
        if p.sum() == 0 or q.sum() == 0:
            continue
        p, q = p / p.sum(), q / q.sum()
        keep = p > 0
        kl = float(np.sum(p[keep] * np.log(p[keep] / np.maximum(q[keep], 1e-12))))
        if kl < best_kl:
            best, best_kl = i, kl
    return best / len(hist)


def uint8_qparams(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric uint8 over [min(lo, 0), max(hi, 0)]: zero is exact (padding, relu)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = float(np.float32(max(hi - lo, 1e-8) / 255))
    return scale, int(np.clip(np.rint(-lo / scale), 0, 255))


def calibrate(graph: Graph, feeds: list[dict], method: str = "minmax") -> dict[str, tuple[float, int]]:
    """Ranges of every quantization point of the prepared float ``graph``, as (scale, zero_point).

    ``entropy`` runs the inputs twice: once for the extremes, once for histograms over them."""
    if method not in METHODS:
        raise ResdslError(f"unknown calibration method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    points = {graph.node(n).name for n in quantization_points(graph, "requant")}
    points |= {graph.node(n).name for n in quantization_points(graph, "float")}
    # the unrounded outputs' ranges too: the grid run --check measures their error in
    points |= {graph.node(n).name for n in graph.topo_order() if is_final_output(graph, n)}
    ranges = {name: _Range(method) for name in points}
    passes = [_Range.add, _Range.add_hist] if method == "entropy" else [_Range.add]
    for record in passes:

        def observe(node, value, record=record) -> None:
            if node.name in ranges:
                record(ranges[node.name], np.asarray(value))

        for feed in feeds:
            for nid in graph.inputs:
                record(ranges[graph.node(nid).name], feed[graph.node(nid).attrs["name"]])
            interpret(graph, feed, observe)
    out = {name: uint8_qparams(*r.bounds()) for name, r in ranges.items()}
    for nid in quantization_points(graph, "requant"):  # value-moving ops keep their input's grid
        out[graph.node(nid).name] = out[graph.node(grid_source(graph, nid)).name]
    return out


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - got)^2)."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    noise = float(np.sum((ref - got) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref**2)) / noise)


@dataclass
class Report:
    layers: list[tuple[str, float]]  # (node name, SQNR dB) in topological order
    outputs: dict[str, tuple[float, float]]  # output -> (SQNR dB, top-1 agreement)


def measure(graph: Graph, qparams: Mapping[str, Any], feeds: list[dict], join: str = "requant") -> Report:
    """Per layer and per output: the quantized graph's values against the float graph's on ``feeds``."""
    quantized = Quantize(QParams.of(qparams), join).run(graph.copy()).graph
    sums: dict[str, list[float]] = {}
    outputs: dict[str, list] = {name: [[], []] for name, _ in graph.outputs}
    for feed in feeds:
        fo, ref = _run(graph, feed, lambda name: True)
        qo, got = _run(quantized, feed, lambda name: name.endswith("/dq"))
        for name, value in ref.items():
            q = got.get(f"{name}/dq")
            if q is not None:
                s = sums.setdefault(name, [0.0, 0.0])
                s[0] += float(np.sum(np.asarray(value, np.float64) ** 2))
                s[1] += float(np.sum((np.asarray(value, np.float64) - q) ** 2))
        for name in outputs:
            outputs[name][0].append(fo[name])
            outputs[name][1].append(qo[name])
    layers = [(n, float("inf") if e == 0 else 10 * np.log10(s / e)) for n, (s, e) in sums.items()]
    out = {}
    for name, (fs, qs) in outputs.items():
        f, q = np.concatenate(fs), np.concatenate(qs)
        agree = float(np.mean(f.reshape(len(f), -1).argmax(1) == q.reshape(len(q), -1).argmax(1)))
        out[name] = (sqnr_db(f, q), agree)
    return Report(layers, out)


def _run(graph: Graph, feed: dict, keep) -> tuple[dict, dict]:
    """The outputs, and the values of the nodes whose names ``keep`` accepts."""
    values: dict[str, np.ndarray] = {}

    def observe(node, value) -> None:
        if keep(node.name):
            values[node.name] = value

    return interpret(graph, feed, observe), values


def write_qparams(path: str, graph: Graph, qparams: Mapping[str, Any], method: str, join: str, req: dict) -> None:
    doc = {
        "format": FORMAT,
        "model": graph.name,
        "model_hash": model_hash(graph),
        "method": method,
        "join": join,
        "pipeline": req,
        "activations": {k: [float(s), int(z)] for k, (s, z) in sorted(qparams.items())},
    }
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)


def read_qparams(path: str) -> dict:
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ResdslError(f"cannot read qparams {path!r}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ResdslError(f"{path!r} is not a qparams file", hint="make one with resdsl quantize")
    return doc


def apply_qparams(graph: Graph, doc: Mapping[str, Any], where: str = "the qparams") -> Graph:
    """The int8 (QDQ) graph of ``graph``; refuses qparams calibrated for another model."""
    if doc["model_hash"] != model_hash(graph):
        raise ResdslError(
            f"{where} were calibrated for model {doc['model']!r} (hash {doc['model_hash']}), "
            f"not this {graph.name!r} (hash {model_hash(graph)})",
            hint="run resdsl quantize on this model, its arguments and weights",
        )
    qparams = {k: (s, z) for k, (s, z) in doc["activations"].items()}
    out = Quantize(QParams.of(qparams), doc.get("join", "requant")).run(graph.copy()).graph
    out.verify()
    out.meta["provenance"] = {**graph.meta.get("provenance", {}), "quantized": dict(doc)}
    return out


def output_step(graph: Graph, name: str) -> float:
    """The quantization step of the int8 ``graph``'s output ``name``: its final dequantize's scale, or
    for an output left unrounded (``passes.quantize.is_final_output``) the grid it was calibrated
    to; 0 when neither (a float output of no calibrated node)."""
    nid = dict(graph.outputs)[name]
    node = graph.node(nid)
    if node.op == "dequantize":
        return float(np.max(node.attrs["scale"]))
    return float(graph.meta.get("output_steps", {}).get(name, 0.0))

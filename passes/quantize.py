"""Static int8 quantization: insert ``quantize``/``dequantize`` pairs (QDQ) given calibrated ranges.

What is rounded where, and why:
- Weights of conv2d, fused_conv and linear: int8, symmetric (zero point 0, range +-127), one
  scale per output channel; biases int32 with scale ``s_x * s_w[c]`` (the scale of the int32
  accumulator), as ONNX Runtime's QLinearConv adds them. Both become ``dequantize(param)``.
- Activations: uint8 per tensor, at every "quantization point": each graph input and each
  compute node, except a node whose only use is a relu (the relu's output is rounded instead,
  so a conv + relu is one requantization with zero point 0, which ONNX Runtime folds away).
  Ops that only move values (max pooling, flatten, reshape, transpose, identity) keep their
  input's grid, so rounding after them is exact and ONNX Runtime drops the pair.
- The residual join: a ``fused_conv`` with a residual is split back into conv, add (and relu),
  so the branch conv's output is rounded on its own grid (ONNX Runtime's QLinearConv then
  requantizes into it) and the join adds two dequantized values and rounds the sum once
  (QLinearAdd). ``join=float`` instead leaves the branch conv's output unrounded: the add and
  the relu run in float on the conv's int32 accumulation, the join kept wider; it costs the
  conv its integer requantization in ONNX Runtime. The calibration (``resdsl quantize``)
  measures both in SQNR; see the README.

``qparams`` maps node names of the prepared graph (after ``split_joins``) to ``(scale,
zero_point)``; it comes from ``resdsl quantize`` (``resdsl.quant``), which calibrates on the
same prepared graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from resdsl.errors import ResdslError
from resdsl.ir import CONST, Graph

from .base import Pass, PassResult, option, register_pass
from .patterns import Namer, sole_user, sweep

SAME_GRID = ("max_pool2d", "flatten", "reshape", "transpose", "identity")
WEIGHTED = ("conv2d", "fused_conv", "linear")
JOINS = ("requant", "float")


def split_joins(graph: Graph) -> int:
    """fused_conv(x, W, b, z) -> [relu](conv2d(x, W, b) + z), in place; returns how many were split.

    The conv keeps its name (and its weights' names); the add and relu are named after it.
    """
    namer = Namer(graph)
    split = 0
    for nid in graph.topo_order():
        node = graph.node(nid)
        if node.op != "fused_conv" or len(graph.args(nid)) < 4:
            continue
        x, w, b, z = graph.args(nid)
        act = node.attrs["activation"]
        uses, outs = graph.uses(nid), graph.output_uses(nid)
        attrs = {k: v for k, v in node.attrs.items() if k != "activation"}
        graph.replace_node(nid, "conv2d", [x, w, b], attrs)
        out = graph.add_node("add", [nid, z], name=namer.fresh(f"{node.name}.add"), loc=node.loc, role="residual")
        if act != "none":
            out = graph.add_node(act, [out], name=namer.fresh(f"{node.name}.{act}"), loc=node.loc)
        _rewire(graph, uses, outs, nid, out)
        split += 1
    return split


def _rewire(graph: Graph, uses: list[tuple[int, int]], outs: list[str], old: int, new: int) -> None:
    for dst, key in uses:
        graph.set_input(dst, key, new)
    graph.outputs = [(name, new if nid == old and name in outs else nid) for name, nid in graph.outputs]


def quantization_points(graph: Graph, join: str = "requant") -> list[int]:
    """The nodes whose outputs are rounded to uint8, in topological order (see the module doc)."""
    points = []
    for nid in graph.topo_order():
        node = graph.node(nid)
        if node.op == "param" or (node.op == "input" and node.dtype != "float32"):
            continue
        user = sole_user(graph, nid)
        if user is not None and graph.node(user).op == "relu":
            continue
        if join == "float" and node.op == "conv2d" and user is not None and graph.node(user).role == "residual":
            continue
        if is_final_output(graph, nid):
            continue
        points.append(nid)
    return points


def is_final_output(graph: Graph, nid: int) -> bool:
    """A compute node read by nothing but the graph's outputs (the logits): it is not rounded.

    Why: rounding it buys no integer kernel (the classifier runs as ONNX Runtime's QGemm, or an
    int8 matmul, either way from its int32 accumulator) and costs the whole output one more
    quantization step: resnet50's logits lose ~2 dB of SQNR to it. ONNX Runtime's
    ``quantize_static`` rounds them; PyTorch's quantized models end in a dequantize too, before
    the classifier's float output. ``output_steps`` keeps the grid it would have had, so that
    ``run --check`` can still speak in quantization steps."""
    node = graph.node(nid)
    return node.op not in ("input", "param") and bool(graph.output_uses(nid)) and not graph.uses(nid)


def grid_source(graph: Graph, nid: int) -> int:
    """The node whose grid ``nid`` keeps: itself, unless it only moves its input's values."""
    while graph.node(nid).op in SAME_GRID:
        nid = graph.args(nid)[0]
    return nid


def weight_qparams(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (axis 0): the int8 array and the scales."""
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float32)
    scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / scale.reshape(-1, *[1] * (w.ndim - 1))), -127, 127).astype(np.int8)
    return q, scale


def _insert_qdq(graph: Graph, nid: int, scale: float, zp: int, namer: Namer) -> int:
    node = graph.node(nid)
    uses, outs = graph.uses(nid), graph.output_uses(nid)
    attrs = {"scale": scale, "zero_point": zp}
    q = graph.add_node("quantize", [nid], {**attrs, "dtype": "uint8"}, namer.fresh(f"{node.name}/q"), node.loc)
    dq = graph.add_node("dequantize", [q], attrs, namer.fresh(f"{node.name}/dq"), node.loc)
    _rewire(graph, uses, outs, nid, dq)
    return dq


def _quantize_weights(graph: Graph, nid: int, namer: Namer) -> list[int]:
    """Replace the float weight and bias of a conv/linear by dequantized int8 and int32 params."""
    node = graph.node(nid)
    x, w, *rest = graph.args(nid)
    if graph.node(x).op != "dequantize" or graph.node(w).op != "param":
        return []
    wq, ws = weight_qparams(graph.param_value(w))
    dq_attrs = {"scale": tuple(ws.tolist()), "zero_point": 0, "axis": 0}
    wp = graph.add_param(namer.fresh(f"{node.name}.weight_int8"), wq, CONST, node.loc)
    wdq = graph.add_node("dequantize", [wp], dq_attrs, namer.fresh(f"{node.name}.weight/dq"), node.loc)
    inputs = [x, wdq]
    if rest and graph.node(rest[0]).op == "param":
        bs = (np.float32(graph.node(x).attrs["scale"]) * ws).astype(np.float32)
        bq = np.clip(np.rint(graph.param_value(rest[0]) / bs), -(2**31), 2**31 - 1).astype(np.int32)
        bp = graph.add_param(namer.fresh(f"{node.name}.bias_int32"), bq, CONST, node.loc)
        b_attrs = {"scale": tuple(bs.tolist()), "zero_point": 0, "axis": 0}
        inputs.append(graph.add_node("dequantize", [bp], b_attrs, namer.fresh(f"{node.name}.bias/dq"), node.loc))
        rest = rest[1:]
    elif rest:
        inputs.append(rest[0])
        rest = rest[1:]
    old = [a for a in graph.args(nid) if graph.node(a).op == "param"]
    graph.set_inputs(nid, inputs + rest)
    return old


def quantize_graph(graph: Graph, qparams: Mapping[str, Any], join: str = "requant") -> dict[str, int]:
    """Split the joins and insert QDQ in place; returns counts. A point without qparams is an error."""
    if join not in JOINS:
        raise ResdslError(f"quantize: join={join!r} is not one of {', '.join(JOINS)}")
    counts = {"split": split_joins(graph), "qdq": 0, "weights": 0}
    namer = Namer(graph)
    missing = [graph.node(n).name for n in quantization_points(graph, join) if graph.node(n).name not in qparams]
    if missing:
        raise ResdslError(
            f"the qparams have no range for {len(missing)} values ({', '.join(missing[:3])}, ...)",
            hint="they were calibrated on another pipeline: run resdsl quantize with the same -O and --passes",
        )
    points = [(nid, graph.node(grid_source(graph, nid)).name) for nid in quantization_points(graph, join)]
    for nid, source in points:
        scale, zp = qparams[source]
        _insert_qdq(graph, nid, float(scale), int(zp), namer)
        counts["qdq"] += 1
    stale = []
    for nid in graph.topo_order():
        if graph.node(nid).op in WEIGHTED:
            old = _quantize_weights(graph, nid, namer)
            counts["weights"] += bool(old)
            stale += old
    sweep(graph, stale)
    # the grid each unrounded output would have had (calibrated like the others): run --check's step
    graph.meta["output_steps"] = {
        name: float(qparams[graph.node(nid).name][0])
        for name, nid in graph.outputs
        if graph.node(nid).op != "dequantize" and graph.node(nid).name in qparams
    }
    return counts


@dataclass(frozen=True)
class QParams:
    """Calibrated activation ranges by node name, hashable so that a pass can hold them."""

    items: tuple[tuple[str, float, int], ...]

    @classmethod
    def of(cls, mapping: Mapping[str, Any]) -> QParams:
        return cls(tuple((k, float(v[0]), int(v[1])) for k, v in sorted(mapping.items())))

    def as_dict(self) -> dict[str, tuple[float, int]]:
        return {k: (s, z) for k, s, z in self.items}


@register_pass
@dataclass(frozen=True)
class Quantize(Pass):
    """Static int8 quantization: QDQ pairs at calibrated activations, int8 per-channel weights."""

    name: ClassVar[str] = "quantize"
    qparams: Any = option(None, help="the calibrated ranges (a QParams), from resdsl quantize")
    join: str = option("requant", help="residual join: requant (round branch and sum) or float", choices=JOINS)

    def run(self, graph: Graph) -> PassResult:
        if self.qparams is None:
            raise ResdslError("the quantize pass needs qparams", hint="use resdsl compile --quantize FILE")
        counts = quantize_graph(graph, self.qparams.as_dict(), self.join)
        return PassResult(graph, True, counts)

"""Fold inference batch norms into the convolution or linear layer that feeds them.

With k = gamma / sqrt(var + eps) per output channel c, batch norm after y = W*x + b is

    BN(y) = (y - mean) * k + beta = (W * k[c]) * x + ((b - mean) * k + beta),

so W' = W * k (scaling W's output-channel axis 0) and b' = (b - mean) * k + beta,
with b = 0 for a bias-free layer (which gains a bias). k and b' are computed in
float64; W' is one float32 product per weight (weights are most of a model's bytes).

A batch norm folds only when its input is a conv2d, or a linear layer whose output
is rank 2 (batch norm normalises axis 1, which is then linear's feature axis), that
nothing else uses, and every weight and statistic is a parameter. Parameter arrays are
shared between graph copies, so new arrays are assigned, never written into. The
folded node keeps the conv's name and gains the batch norm's source location.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from resdsl.ir import WEIGHT, Graph

from .manager import PassOptions, PassResult, register_pass
from .patterns import Namer, inherit, is_param, sole_user, sweep


@dataclass(frozen=True)
class Fold:
    bn: int
    layer: int  # the conv2d or linear whose weights absorb the batch norm


def check(graph: Graph, bn: int) -> Fold | str:
    """A Fold, or why this batch norm must stay."""
    args = graph.args(bn)
    layer = args[0]
    node = graph.node(layer)
    if node.op not in ("conv2d", "linear"):
        return f"its input is {node.op}, not conv2d or linear"
    if sole_user(graph, layer) != bn:
        return f"{node.name} has other uses, which need its unnormalised output"
    if node.op == "linear" and len(node.shape) != 2:
        return f"{node.name} is rank {len(node.shape)}: axis 1 is not its feature axis"
    weights = graph.args(layer)[1:]
    if not all(is_param(graph, p) for p in weights + args[1:]):
        return "a weight or statistic is computed, not a parameter"
    return Fold(bn, layer)


def rewrite(graph: Graph, fold: Fold, namer: Namer) -> list[int]:
    """Fold one batch norm; returns nodes that may now be dead."""
    bn, layer = graph.node(fold.bn), graph.node(fold.layer)
    gamma, beta, mean, var = (graph.param_value(p).astype(np.float64) for p in graph.args(fold.bn)[1:])
    k = gamma / np.sqrt(var + bn.attrs["eps"])
    largs = graph.args(fold.layer)
    w = graph.param_value(largs[1])
    b = graph.param_value(largs[2]).astype(np.float64) if len(largs) > 2 else np.zeros(w.shape[0])
    new_w = w * k.astype(np.float32).reshape((-1,) + (1,) * (w.ndim - 1))  # float32: weights are large
    new_b = (b - mean) * k + beta
    garbage = [fold.bn, *graph.args(fold.bn)[1:]]
    garbage += _set_param(graph, fold.layer, 1, new_w, f"{layer.name}.weight", namer)
    garbage += _set_param(graph, fold.layer, 2, new_b, f"{layer.name}.bias", namer)
    inherit(layer, bn)
    graph.replace_all_uses(fold.bn, fold.layer)
    return garbage


def _set_param(graph: Graph, nid: int, index: int, value: np.ndarray, base: str, namer: Namer) -> list[int]:
    """Give input ``index`` of ``nid`` a new value: a new array under the old name when only
    this node reads it, else a new parameter. Returns the replaced parameter node, if any."""
    args = graph.args(nid)
    old = args[index] if index < len(args) else None
    value = np.ascontiguousarray(value, dtype=np.float32)
    if old is not None and graph.num_uses(old) == 1:
        graph.parameters[graph.node(old).attrs["name"]] = value
        return []
    new = graph.add_param(namer.fresh(base), value, WEIGHT, graph.node(nid).loc)
    graph.set_input(nid, index, new)
    return [old] if old is not None else []


@register_pass("fold_batchnorm")
def run(graph: Graph, options: PassOptions) -> PassResult:
    """Fold batch norms into the conv2d/linear before them: W' = W k, b' = (b - mean) k + beta."""
    order = graph.topo_order()
    namer = Namer(graph, order)
    garbage: list[int] = []
    folded = kept = 0
    for nid in order:
        if graph.node(nid).op != "batch_norm":
            continue
        match = check(graph, nid)
        if isinstance(match, str):
            kept += 1
            continue
        garbage += rewrite(graph, match, namer)
        folded += 1
    sweep(graph, garbage)
    return PassResult(graph, folded > 0, {"folded": folded, "kept": kept})

"""Fold inference batch norms into the convolution or linear layer that feeds them.

With k = gamma / sqrt(var + eps) per output channel c, batch norm after y = W*x + b is

    BN(y) = (y - mean) * k + beta = (W * k[c]) * x + ((b - mean) * k + beta),

so W' = W * k (scaling W's output-channel axis 0) and b' = (b - mean) * k + beta,
with b = 0 for a bias-free layer (which gains a bias). k and b' are computed in
float64; W' is one float32 product per weight (weights are most of a model's bytes).

A batch norm folds only when its input is a conv2d, or a linear layer whose output
is rank 2 (batch norm normalises axis 1, which is then linear's feature axis), that
nothing else uses, and every weight and statistic is a parameter. Parameter arrays are
shared between graph copies, so new arrays are assigned (``Graph.set_param``), never
written into. The folded node keeps the conv's name and gains the batch norm's source
location (the rewrite driver records it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from resdsl.ir import WEIGHT, Graph, Node

from .base import Pass, PassResult, register_pass
from .patterns import Namer, is_param, sole_user
from .rewrite import Match, Refusal, Rule, apply_rules


def check(graph: Graph, bn: Node) -> Match | Refusal:
    """A match of this batch norm and the layer that absorbs it, or why it must stay."""
    args = graph.args(bn.id)
    layer = args[0]
    node = graph.node(layer)
    if node.op not in ("conv2d", "linear"):
        return Refusal(f"its input is {node.op}, not conv2d or linear")
    if sole_user(graph, layer) != bn.id:
        return Refusal(f"{node.name} has other uses, which need its unnormalised output")
    if node.op == "linear" and len(node.shape) != 2:
        return Refusal(f"{node.name} is rank {len(node.shape)}: axis 1 is not its feature axis")
    weights = graph.args(layer)[1:]
    if not all(is_param(graph, p) for p in weights + args[1:]):
        return Refusal("a weight or statistic is computed, not a parameter")
    return Match(bn.id, {"bn": bn.id, "layer": layer})


def rewrite(graph: Graph, match: Match, namer: Namer) -> int:
    """Give the layer W' = W k and b' = (b - mean) k + beta; it replaces the batch norm."""
    bn, layer = graph.node(match["bn"]), graph.node(match["layer"])
    gamma, beta, mean, var = (graph.param_value(p).astype(np.float64) for p in graph.args(bn.id)[1:])
    k = gamma / np.sqrt(var + bn.attrs["eps"])
    largs = graph.args(layer.id)
    w = graph.param_value(largs[1])
    b = graph.param_value(largs[2]).astype(np.float64) if len(largs) > 2 else np.zeros(w.shape[0])
    new_w = w * k.astype(np.float32).reshape((-1,) + (1,) * (w.ndim - 1))  # float32: weights are large
    new_b = (b - mean) * k + beta
    _set_param(graph, layer.id, 1, new_w, f"{layer.name}.weight", namer)
    _set_param(graph, layer.id, 2, new_b, f"{layer.name}.bias", namer)
    return layer.id


def _set_param(graph: Graph, nid: int, index: int, value: np.ndarray, base: str, namer: Namer) -> None:
    """Give input ``index`` of ``nid`` a new value: a new array under the old name when only
    this node reads it, else a new parameter (the old one is cleaned up if now unused)."""
    args = graph.args(nid)
    old = args[index] if index < len(args) else None
    if old is not None and graph.num_uses(old) == 1:
        graph.set_param(graph.node(old).attrs["name"], value)
        return
    new = graph.add_param(namer.fresh(base), value, WEIGHT, graph.node(nid).loc)
    graph.set_input(nid, index, new)


FOLD = Rule("fold_batchnorm", "batch_norm", check, rewrite)


@register_pass
@dataclass(frozen=True)
class FoldBatchnorm(Pass):
    """Fold batch norms into the conv2d/linear before them: W' = W k, b' = (b - mean) k + beta."""

    name: ClassVar[str] = "fold_batchnorm"
    rules: ClassVar[tuple[Rule, ...]] = (FOLD,)

    def run(self, graph: Graph) -> PassResult:
        report = apply_rules(graph, list(self.rules))
        folded = report.counts[FOLD.name]
        kept = len(report.refused(FOLD.name))
        return PassResult(graph, folded > 0, {"folded": folded, "kept": kept}, report)

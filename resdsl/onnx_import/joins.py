"""Residual joins of an imported graph, made visible to ``residual.py`` and ``analysis.residual_joins``.

An identity shortcut needs nothing: ``Add(x, F(x))`` has an operand that feeds the other, which is
how resdsl tells a residual add. A projection shortcut ``Add(F(x), P(x))`` (ResNet's downsample)
has neither operand feeding the other; the DSL's shortcuts pass marks the P it inserts with the
role "projection", so the importer marks an exported P the same way: the operand whose chain of
single-use conv / batch norm / pooling nodes reaches back to a value that the other operand
also descends from, the shorter chain where both would qualify.
"""

from __future__ import annotations

from ..ir import Graph
from ..residual import Ancestry

_PROJECTION_OPS = ("conv2d", "batch_norm", "avg_pool2d", "max_pool2d", "pad", "identity", "linear", "relu")


def _chain(graph: Graph, nid: int) -> tuple[list[int], int] | None:
    """The single-use projection-like nodes ending at ``nid``, and the value they start from."""
    chain = []
    while graph.node(nid).op in _PROJECTION_OPS and graph.num_uses(nid) == 1:
        data = [a for a in graph.args(nid) if graph.node(a).op != "param"]
        if len(data) != 1:
            return None
        chain.append(nid)
        nid = data[0]
    return (chain, nid) if chain else None


def mark_projections(graph: Graph) -> int:
    """Give the projection shortcut of every add whose operands are not ancestors of each other the
    role "projection"; returns how many joins were marked."""
    ancestry = Ancestry(graph)
    marked = 0
    for nid in ancestry.order:
        node = graph.node(nid)
        if node.op != "add":
            continue
        a, b = graph.args(nid)
        if graph.node(a).op == "param" or graph.node(b).op == "param" or a == b:
            continue
        if ancestry.is_ancestor(a, b) or ancestry.is_ancestor(b, a):
            continue
        candidates = []
        for shortcut, other in ((a, b), (b, a)):
            found = _chain(graph, shortcut)
            if found and ancestry.is_ancestor(found[1], other):
                candidates.append(found[0])
        if candidates:
            for p in min(candidates, key=len):
                graph.node(p).role = "projection"
            marked += 1
    return marked

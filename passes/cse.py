"""Common subexpression elimination: ops are pure, so op(attrs)(x...) computed twice is one value.

Two nodes with the same op, the same attributes and the same inputs (in order) give
the same value; later ones are replaced by the first in topological order. Visiting in
that order lets merges cascade: once two inputs are merged, their users compare equal.
Parameters and inputs are never merged: distinct names are distinct state, even when
their values happen to agree today (weights can be loaded later). The kept node gains
the merged node's source location.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from resdsl.ir import Graph, Node

from .base import Pass, PassResult, register_pass


def key(graph: Graph, node: Node) -> tuple:
    attrs = tuple(sorted((k, repr(v)) for k, v in node.attrs.items()))
    return node.op, tuple(graph.args(node.id)), attrs


@register_pass
@dataclass(frozen=True)
class CommonSubexpressions(Pass):
    """Merge nodes with the same op, attributes and inputs."""

    name: ClassVar[str] = "cse"

    def run(self, graph: Graph) -> PassResult:
        return run(graph)


def run(graph: Graph) -> PassResult:
    first: dict[tuple, int] = {}
    merged = 0
    for nid in graph.topo_order():
        node = graph.node(nid)
        if node.op in ("param", "input"):
            continue
        keep = first.setdefault(key(graph, node), nid)
        if keep == nid:
            continue
        graph.inherit(keep, [nid])
        graph.replace_all_uses(nid, keep)
        graph.remove(nid)
        merged += 1
    return PassResult(graph, merged > 0, {"merged": merged})

"""Dead code elimination: a node whose value reaches no output cannot change any output.

Live nodes are the outputs and, transitively, the inputs of live nodes; everything
else goes, except graph inputs (they are the model's signature). A parameter array
goes with its last node, so a dead layer's weights leave the artifact too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from resdsl.ir import Graph

from .base import Pass, PassResult, register_pass


def live_nodes(graph: Graph) -> set[int]:
    live = {nid for _, nid in graph.outputs}
    stack = list(live)
    while stack:
        for src in graph.args(stack.pop()):
            if src not in live:
                live.add(src)
                stack.append(src)
    return live


@register_pass
@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    """Remove nodes and parameters that reach no output."""

    name: ClassVar[str] = "dce"

    def run(self, graph: Graph) -> PassResult:
        return run(graph)


def run(graph: Graph) -> PassResult:
    live = live_nodes(graph)
    inputs = set(graph.inputs)
    dead = [nid for nid in graph.topo_order() if nid not in live and nid not in inputs]
    arrays = len(graph.parameters)
    graph.remove_many(dead)
    counts = {"nodes": len(dead), "parameters": arrays - len(graph.parameters)}
    return PassResult(graph, bool(dead), counts)

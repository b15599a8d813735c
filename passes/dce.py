"""Dead code elimination: a node whose value reaches no output cannot change any output.

Live nodes are the outputs and, transitively, the inputs of live nodes; everything
else goes, except graph inputs (they are the model's signature). A parameter array
goes with its last node, so a dead layer's weights leave the artifact too.
"""

from __future__ import annotations

from resdsl.ir import Graph

from .manager import PassOptions, PassResult, register_pass


def live_nodes(graph: Graph) -> set[int]:
    live = {nid for _, nid in graph.outputs}
    stack = list(live)
    while stack:
        for src in graph.args(stack.pop()):
            if src not in live:
                live.add(src)
                stack.append(src)
    return live


@register_pass("dce")
def run(graph: Graph, options: PassOptions) -> PassResult:
    """Remove nodes and parameters that reach no output."""
    live = live_nodes(graph)
    inputs = set(graph.inputs)
    dead = [nid for nid in graph.topo_order() if nid not in live and nid not in inputs]
    arrays = len(graph.parameters)
    graph.remove_many(dead)
    counts = {"nodes": len(dead), "parameters": arrays - len(graph.parameters)}
    return PassResult(graph, bool(dead), counts)

"""Small helpers the rewrite passes share: use queries, fresh names, cleanup.

Rules themselves (check with a reason, rewrite) and the driver that applies them are in
``rewrite.py``; source locations pass to replacements through ``Graph.inherit``.

Everything here is linear in what it touches: deep networks (a 1001-layer ResNet
has ~8,000 nodes) must not pay a whole-graph scan per rewrite.
"""

from __future__ import annotations

from collections.abc import Iterable

from resdsl.ir import Graph


def sole_user(graph: Graph, nid: int) -> int | None:
    """The one node that consumes ``nid`` through one edge, or None (several uses, or a graph output)."""
    uses = graph.uses(nid)
    if len(uses) != 1 or graph.output_uses(nid):
        return None
    return uses[0][0]


def is_param(graph: Graph, nid: int) -> bool:
    return graph.node(nid).op == "param"


class Namer:
    """``graph.unique_name`` for one pass, with one scan of the graph instead of one per name.

    Node names are read once (on first use) and names handed out are remembered;
    parameter names are checked live, so a parameter added since (named after a fresh
    node name plus ``.weight``) is seen. Nodes a pass adds must take their names from here.
    """

    def __init__(self, graph: Graph, order: list[int] | None = None) -> None:
        self.graph = graph
        self.order = order  # node ids, if the pass already listed them
        self.taken: set[str] | None = None  # filled on first use: most runs need no name

    def fresh(self, base: str) -> str:
        if self.taken is None:
            ids = self.order if self.order is not None else self.graph.topo_order()
            self.taken = {self.graph.node(nid).name for nid in ids if nid in self.graph}
        name, i = base, 1
        while name in self.taken or name in self.graph.parameters:
            name = f"{base}_{i}"
            i += 1
        self.taken.add(name)
        return name


def sweep(graph: Graph, candidates: Iterable[int]) -> int:
    """Remove the candidates that nothing alive uses any more (users before their inputs is fastest).

    Returns how many nodes went; parameters lose their arrays with their last node.
    """
    cands = [c for c in dict.fromkeys(candidates) if c in graph and c not in graph.inputs]
    dead: set[int] = set()
    changed = True
    while changed:
        changed = False
        for c in cands:
            if c in dead or graph.output_uses(c):
                continue
            if all(dst in dead for dst, _ in graph.uses(c)):
                dead.add(c)
                changed = True
    graph.remove_many(dead)
    return len(dead)

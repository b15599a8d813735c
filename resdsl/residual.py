"""Residual connections: which operand is the shortcut, and what a projection must do.

Shared by the DSL (to reject an impossible residual at the line that wrote it), the
passes (shortcuts, scale_residuals, fuse_add) and the analyses (show, viz, analyze),
so that all of them agree on what a residual connection is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Graph
from .shapes import Shape, fmt

# Roles the shortcuts pass gives the nodes it inserts: such an operand is the shortcut of its add.
SHORTCUT_ROLES = ("projection", "shortcut")


@dataclass(frozen=True)
class Projection:
    kind: str  # "conv" (NCHW: 1x1 conv with stride) or "dense" (linear on the last axis)
    in_features: int
    out_features: int
    stride: int = 1


def plan(shortcut: Shape, branch: Shape) -> Projection | str:
    """The projection mapping ``shortcut`` to ``branch``'s shape, or why there is none."""
    if len(shortcut) != len(branch):
        return f"ranks differ: {fmt(shortcut)} vs {fmt(branch)}"
    if shortcut[0] != branch[0]:
        return f"batch dimensions differ: {fmt(shortcut)} vs {fmt(branch)}"
    if len(shortcut) == 4:
        strides = set()
        for din, dout in ((shortcut[2], branch[2]), (shortcut[3], branch[3])):
            fits = [s for s in {max(din // dout, 1), -(-din // dout)} if (din - 1) // s + 1 == dout]
            if not fits:
                return (
                    f"spatial size {din} cannot be strided to {dout} (the ratio is not an integer): "
                    f"{fmt(shortcut)} vs {fmt(branch)}"
                )
            strides.add(min(fits))
        if len(strides) != 1:
            return f"height and width shrink by different ratios: {fmt(shortcut)} vs {fmt(branch)}"
        return Projection("conv", shortcut[1], branch[1], strides.pop())
    if len(shortcut) >= 2:
        if shortcut[:-1] != branch[:-1]:
            return f"only the last axis can be projected: {fmt(shortcut)} vs {fmt(branch)}"
        return Projection("dense", shortcut[-1], branch[-1])
    return f"rank-{len(shortcut)} operands cannot be projected"


class Ancestry:
    """``is_ancestor`` by a backward search from the descendant that never climbs above the ancestor.

    Positions come from one topological order, so a node placed before ``a`` cannot
    have ``a`` as an ancestor and is not searched. A residual add's search thus stays
    inside its block instead of walking the whole network. Nodes created after the
    order was taken have no position and are always searched (sound, just slower);
    a pass must not ask after adding edges that contradict the order.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.order = graph.topo_order()
        self.pos = {nid: i for i, nid in enumerate(self.order)}

    def is_ancestor(self, a: int, b: int) -> bool:
        if a == b:
            return False
        floor = self.pos.get(a, -1)
        seen, stack = {b}, [b]
        while stack:
            for p in self.graph.args(stack.pop()):
                if p == a:
                    return True
                if p not in seen and self.pos.get(p, len(self.pos)) > floor:
                    seen.add(p)
                    stack.append(p)
        return False


def residual_operands(graph: Graph, add: int, ancestry: Ancestry) -> tuple[int, int] | None:
    """(shortcut, branch) of a two-operand residual add, or None for a plain sum of unrelated values."""
    a, b = graph.args(add)[:2]
    return shortcut_pair(graph, a, b, ancestry)


def shortcut_pair(graph: Graph, a: int, b: int, ancestry: Ancestry) -> tuple[int, int] | None:
    """(shortcut, branch) when ``a`` and ``b`` meet as a residual connection, else None.

    The shortcut is the operand that feeds the other; where the shortcuts pass has put a
    projection on it, the shortcut no longer feeds the branch, so its role marks it instead.
    """
    if ancestry.is_ancestor(a, b):
        return a, b
    if ancestry.is_ancestor(b, a):
        return b, a
    ra = graph.node(a).role in SHORTCUT_ROLES
    rb = graph.node(b).role in SHORTCUT_ROLES
    if ra != rb:
        return (a, b) if ra else (b, a)
    return None

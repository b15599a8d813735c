"""Residual connections: which adds are joins, which operand is the shortcut, what a projection does.

Shared by the DSL (to give a join the branch's shape and reject an impossible one at the
line that wrote it), the passes (shortcuts, scale_residuals, fuse_add) and the analyses
(show, viz, analyze), so that all of them agree on what a residual connection is.

A residual join is an add one of whose operands (the shortcut) feeds the other (the
branch). Whenever the two differ in shape, broadcasting included, the join takes the
branch's shape and the shortcut is projected; a deliberate broadcast is an add or mul
of a value the other operand is not computed from (a parameter, a constant, another
input). The projection strides by what the branch does, the product of the strides of
its convolutions and pools, never by a guess from the ratio of the shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .ir import Graph
from .shapes import fmt, pair

# Roles the shortcuts pass gives the nodes it inserts: such an operand is the shortcut of its add.
SHORTCUT_ROLES = ("projection", "shortcut")
# Elementwise joins: their output keeps the shape of the operand that carries the spatial grid.
_ELEMENTWISE = ("add", "sub", "mul", "sum")
_POOLS = ("max_pool2d", "avg_pool2d")


@dataclass(frozen=True)
class Projection:
    kind: str  # "conv" (NCHW: 1x1 conv with stride) or "dense" (linear on the last axis)
    in_features: int
    out_features: int
    stride: int | tuple[int, int] = 1


def _position(nid: int) -> int:
    """Node ids as positions: while the DSL builds, every input is created before its user."""
    return nid


def _feeds(graph: Graph, a: int, b: int, pos: Callable[[int], int], floor: int) -> bool:
    """True when ``a`` feeds ``b``, searching back from ``b`` only through positions above ``floor``."""
    if a == b:
        return False
    seen, stack = {b}, [b]
    while stack:
        for p in graph.args(stack.pop()):
            if p == a:
                return True
            if p not in seen and pos(p) > floor:
                seen.add(p)
                stack.append(p)
    return False


def op_stride(graph: Graph, nid: int) -> tuple[int, int]:
    """The (h, w) stride of one op: a convolution's or pool's, 1 for every other op."""
    node = graph.node(nid)
    if node.op in _POOLS:
        return pair(node.attrs.get("stride") or node.attrs["kernel"])
    if "stride" in node.attrs and len(node.shape) == 4:
        return pair(node.attrs["stride"] or 1)
    return (1, 1)


def branch_strides(
    graph: Graph, shortcut: int, branch: int, pos: Callable[[int], int], floor: int
) -> set[tuple[int, int]]:
    """The products of the strides along every path from ``shortcut`` to ``branch``.

    Through an elementwise op only the operands of the op's own shape count, so a pending
    join (whose shortcut is not projected yet) strides by its branch, and a gate of
    (N, C, 1, 1) multiplied in does not count as a path.
    """
    products: dict[int, set[tuple[int, int]]] = {shortcut: {(1, 1)}}
    stack = [branch]
    while stack:
        nid = stack[-1]
        if nid in products:
            stack.pop()
            continue
        node = graph.node(nid)
        args = [p for p in graph.args(nid) if p == shortcut or pos(p) > floor]
        if node.op in _ELEMENTWISE:
            args = [p for p in args if graph.node(p).shape == node.shape] or args
        todo = [p for p in args if p not in products]
        if todo:
            stack.extend(todo)
            continue
        sh, sw = op_stride(graph, nid)
        products[nid] = {(h * sh, w * sw) for p in args for h, w in products[p]}
        stack.pop()
    return products[branch]


def plan(graph: Graph, shortcut: int, branch: int, ancestry: Ancestry | None = None) -> Projection | str:
    """The projection mapping the ``shortcut`` operand to the ``branch``'s shape, or why there is none.

    NCHW: a 1x1 convolution (or option A's strided subsample) with the branch's own stride;
    its output shape must be the branch's. Other ranks: a linear map on the last axis.
    """
    s, b = graph.node(shortcut).shape, graph.node(branch).shape
    if len(s) != len(b):
        return f"ranks differ: {fmt(s)} vs {fmt(b)}"
    if s[0] != b[0]:
        return f"batch dimensions differ: {fmt(s)} vs {fmt(b)}"
    if len(s) == 4:
        if ancestry is None:
            strides = branch_strides(graph, shortcut, branch, _position, shortcut)
        else:
            strides = branch_strides(graph, shortcut, branch, ancestry.position, ancestry.pos.get(shortcut, -1))
        grids = {(sh, sw): ((s[2] - 1) // sh + 1, (s[3] - 1) // sw + 1) for sh, sw in strides or {(1, 1)}}
        for (sh, sw), grid in sorted(grids.items(), reverse=True):
            if grid == tuple(b[2:]):
                return Projection("conv", s[1], b[1], sh if sh == sw else (sh, sw))
        told = " or ".join(f"{sh}x{sw} (to {h}x{w})" for (sh, sw), (h, w) in sorted(grids.items()))
        return (
            f"the branch strides by {told}, the product of its convolutions' and pools' strides, "
            f"but outputs {b[2]}x{b[3]}: shortcut {fmt(s)}, branch {fmt(b)}"
        )
    if len(s) >= 2:
        if s[:-1] != b[:-1]:
            return f"only the last axis can be projected: {fmt(s)} vs {fmt(b)}"
        return Projection("dense", s[-1], b[-1])
    return f"rank-{len(s)} operands cannot be projected"


def pending_join(graph: Graph, a: int, b: int) -> tuple[int, int] | None:
    """(shortcut, branch) when the DSL's ``a + b`` is a residual join whose shapes differ, else None.

    Called while the model is built, so positions are node ids. Operands without inputs
    (parameters, constants, graph inputs) are never the branch, which keeps a bias add cheap.
    """
    if graph.node(a).shape == graph.node(b).shape:
        return None
    if graph.args(b) and _feeds(graph, a, b, _position, a):
        return a, b
    if graph.args(a) and _feeds(graph, b, a, _position, b):
        return b, a
    return None


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

    def position(self, nid: int) -> int:
        return self.pos.get(nid, len(self.pos))

    def is_ancestor(self, a: int, b: int) -> bool:
        return _feeds(self.graph, a, b, self.position, self.pos.get(a, -1))


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

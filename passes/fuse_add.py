"""Fuse residual adds: into the convolution that feeds them, and chains of adds into one sum.

(a) ``act(conv(x, W, b) + z)`` with act in {relu, none} is ``fused_conv(x, W, b, z)``
    (ONNX Runtime's com.microsoft.FusedConv): the add is done while the conv's output
    is still in registers. The conv must have no other use (the fused node no longer
    produces conv(x) alone), which also guarantees z does not depend on it, so no cycle
    forms. When both operands are such convs (a downsampling block after batch norm
    folding: branch conv and projection conv), the branch is fused and z is the shortcut.
    The relu is absorbed only when it is the add's sole use. A bias-free conv gains a
    zero bias, as fused_conv takes one.
(b) An add tree ``((a + b) + c) + d`` whose inner adds have no other use is
    ``sum(a, b, c, d)``: addition is associative (float32 rounding order changes by at
    most a few ulps), and one variadic node reads each operand once.

Fused nodes keep the conv's (or the root add's) name and gain the replaced nodes' locations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from resdsl.ir import CONST, Graph
from resdsl.residual import Ancestry, residual_operands

from .manager import PassOptions, PassResult, register_pass
from .patterns import Namer, inherit, sole_user


@dataclass(frozen=True)
class ConvAdd:
    conv: int
    add: int


def check_conv_add(graph: Graph, add: int, ancestry: Ancestry) -> ConvAdd | str:
    """Which operand of ``add`` to fuse, or why none can be."""
    shape = graph.node(add).shape
    args = graph.args(add)
    if any(graph.node(a).shape != shape for a in args):
        return "the add broadcasts; fused_conv needs equal shapes"
    convs = [a for a in args if graph.node(a).op == "conv2d" and sole_user(graph, a) == add]
    if not convs:
        return "no operand is a conv2d used only by this add"
    if len(convs) == 2:
        pair = residual_operands(graph, add, ancestry)
        if pair is not None:
            return ConvAdd(pair[1], add)
    return ConvAdd(convs[0], add)


def fuse_conv_add(graph: Graph, match: ConvAdd, namer: Namer) -> None:
    conv = graph.node(match.conv)
    add = graph.node(match.add)
    a, b = graph.args(match.add)
    z = b if a == match.conv else a
    x, w, *bias = graph.args(match.conv)
    if not bias:
        o = graph.node(w).shape[0]
        bias = [graph.add_param(namer.fresh(f"{conv.name}.bias"), np.zeros(o, np.float32), CONST, conv.loc)]
    last, replaced = match.add, [add]
    relu = sole_user(graph, match.add)
    if relu is not None and graph.node(relu).op == "relu":
        last = relu
        replaced.append(graph.node(relu))
    conv.op = "fused_conv"
    conv.attrs = {**conv.attrs, "activation": "relu" if last != match.add else "none"}
    graph.set_inputs(match.conv, [x, w, bias[0], z])
    graph.reinfer(match.conv)
    inherit(conv, *replaced)
    graph.replace_all_uses(last, match.conv)
    for node in reversed(replaced):
        graph.remove(node.id)


def _add_tree(graph: Graph, root: int) -> tuple[list[int], list[int]]:
    """(leaves in operand order, inner adds) of the add/sum tree rooted at ``root``."""
    leaves, inner = [], []
    stack = list(reversed(graph.args(root)))
    while stack:
        nid = stack.pop()
        if graph.node(nid).op in ("add", "sum") and sole_user(graph, nid) is not None:
            inner.append(nid)
            stack.extend(reversed(graph.args(nid)))
        else:
            leaves.append(nid)
    return leaves, inner


def fuse_sum(graph: Graph, root: int) -> bool:
    leaves, inner = _add_tree(graph, root)
    if not inner:
        return False
    node = graph.node(root)
    shape = node.shape
    node.op, node.attrs = "sum", {}
    graph.set_inputs(root, leaves)
    graph.reinfer(root)
    assert node.shape == shape, f"{node.name}: sum changed the shape"
    inherit(node, *(graph.node(i) for i in inner))
    graph.remove_many(inner)
    return True


@register_pass("fuse_add")
def run(graph: Graph, options: PassOptions) -> PassResult:
    """conv + add (+ relu) -> fused_conv; trees of single-use adds -> sum."""
    ancestry = Ancestry(graph)
    # Decide every conv fusion on the unchanged graph: fusing adds the edge z -> conv,
    # which the ancestry's topological positions do not know.
    matches = []
    for nid in ancestry.order:
        if graph.node(nid).op == "add":
            match = check_conv_add(graph, nid, ancestry)
            if not isinstance(match, str):
                matches.append(match)
    namer = Namer(graph, ancestry.order)
    for match in matches:
        fuse_conv_add(graph, match, namer)
    # Roots before the adds they absorb: the old order still has every add after its
    # operands (fusing only added edges into convs), so reversing it serves.
    sums = 0
    for nid in reversed(ancestry.order):
        if nid in graph and graph.node(nid).op in ("add", "sum"):
            sums += fuse_sum(graph, nid)
    return PassResult(graph, bool(matches or sums), {"fused_conv": len(matches), "sum": sums})

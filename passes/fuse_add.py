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

Both are rules (``rewrite.py``), applied in that order, each over the whole graph. When both
operands of an add are single-use convs, neither can feed the other (each one's only use
is the add), so the shortcut is told by its role: the projection the shortcuts pass made.
Fused nodes keep the conv's (or the root add's) name and gain the replaced nodes' locations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from resdsl.ir import CONST, Graph, Node
from resdsl.residual import SHORTCUT_ROLES

from .base import Pass, PassResult, register_pass
from .patterns import Namer, sole_user
from .rewrite import Match, Refusal, Rule, apply_rules


def check_conv_add(graph: Graph, add: Node) -> Match | Refusal:
    """The conv operand of ``add`` to fuse (with the relu after it), or why none can be."""
    args = graph.args(add.id)
    if any(graph.node(a).shape != add.shape for a in args):
        return Refusal("the add broadcasts; fused_conv needs equal shapes")
    convs = [a for a in args if graph.node(a).op == "conv2d"]
    if not convs:
        return Refusal("no operand is a conv2d")
    single = [a for a in convs if sole_user(graph, a) == add.id]
    if not single:
        return Refusal(f"the conv {', '.join(graph.node(a).name for a in convs)} has another use")
    branches = [a for a in single if graph.node(a).role not in SHORTCUT_ROLES]
    conv = branches[0] if len(single) == 2 and len(branches) == 1 else single[0]
    relu = sole_user(graph, add.id)
    if relu is not None and graph.node(relu).op == "relu":
        return Match(relu, {"conv": conv, "add": add.id, "relu": relu})
    return Match(add.id, {"conv": conv, "add": add.id})


def fuse_conv_add(graph: Graph, match: Match, namer: Namer) -> int:
    """conv(x, W, b) + z (then relu) -> fused_conv(x, W, b, z); a bias-free conv gains a zero bias."""
    conv = graph.node(match["conv"])
    a, b = graph.args(match["add"])
    z = b if a == conv.id else a
    x, w, *bias = graph.args(conv.id)
    if not bias:
        o = graph.node(w).shape[0]
        bias = [graph.add_param(namer.fresh(f"{conv.name}.bias"), np.zeros(o, np.float32), CONST, conv.loc)]
    activation = "relu" if match.get("relu") is not None else "none"
    graph.replace_node(conv.id, "fused_conv", [x, w, bias[0], z], {**conv.attrs, "activation": activation})
    return conv.id


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


def check_sum(graph: Graph, node: Node) -> Match | Refusal:
    """The add tree rooted here, or why there is none (an inner add is absorbed by its root)."""
    user = sole_user(graph, node.id)
    if user is not None and graph.node(user).op in ("add", "sum"):
        return Refusal(f"its only use is {graph.node(user).name}, whose sum takes it in")
    _, inner = _add_tree(graph, node.id)
    if not inner:
        return Refusal("no operand is an add or sum without other uses")
    return Match(node.id, {"inner": tuple(inner)})


def fuse_sum(graph: Graph, match: Match, namer: Namer) -> int:
    """((a + b) + c) + d -> sum(a, b, c, d), in the root's place."""
    leaves, _ = _add_tree(graph, match.root)
    graph.replace_node(match.root, "sum", leaves)
    return match.root


CONV_ADD = Rule("fuse_conv_add", "add", check_conv_add, fuse_conv_add)
SUM = Rule("fuse_sum", ("add", "sum"), check_sum, fuse_sum)


@register_pass
@dataclass(frozen=True)
class FuseAdd(Pass):
    """conv + add (+ relu) -> fused_conv; trees of single-use adds -> sum."""

    name: ClassVar[str] = "fuse_add"
    rules: ClassVar[tuple[Rule, ...]] = (CONV_ADD, SUM)

    def run(self, graph: Graph) -> PassResult:
        report = apply_rules(graph, list(self.rules))
        counts = {"fused_conv": report.counts[CONV_ADD.name], "sum": report.counts[SUM.name]}
        return PassResult(graph, report.modified, counts, report)

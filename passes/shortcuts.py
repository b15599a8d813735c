"""Projection shortcuts: make every residual add well-defined.

A residual add y = F(x) + x whose operands differ in shape in any way, broadcasting
included, is a join the seed's projection connection replaces by y = F(x) + P(x);
the shortcut operand is the one that feeds the other (``resdsl.residual``). A, B
and C agree on which adds are joins. Options (He et al. 2015):

- B (default): project only where shapes differ. NCHW: P = 1x1 conv (no bias,
  stride = the branch's own: the product of its convolutions' and pools' strides)
  then batch norm, named ``<scope>.downsample.0/1`` as torchvision does; rank 2/3: P(x) = x M^T, a bias-free linear ``<scope>.proj``.
- A: parameter-free. Stride the identity (1x1 average pool with the branch's
  stride, i.e. x[:, :, ::s, ::s]) and zero-pad the new channels, half before
  and half after, as the CIFAR ResNets' reference code does.
- C: project every residual shortcut, also where shapes agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from resdsl import residual
from resdsl.errors import ResdslError
from resdsl.init import he_normal
from resdsl.ir import BUFFER, WEIGHT, Graph
from resdsl.shapes import broadcast, fmt, pair

from .base import Pass, PassResult, option, register_pass
from .patterns import Namer


@register_pass
@dataclass(frozen=True)
class Shortcuts(Pass):
    """Insert projection (B/C) or parameter-free (A) shortcuts where a residual add needs one."""

    name: ClassVar[str] = "shortcuts"
    mode: str | None = option(
        None, flag="shortcut", choices=("A", "B", "C"), help="A, B or C; default: the model's own, else B"
    )

    def run(self, graph: Graph) -> PassResult:
        return run(graph, self.mode)


def run(graph: Graph, shortcut: str | None) -> PassResult:
    mode = (shortcut or graph.meta.get("shortcut") or "B").upper()
    if mode not in ("A", "B", "C"):
        raise ResdslError(f"unknown shortcut option {mode!r}", hint="use A, B or C")
    counts = {"projections": 0, "parameter_free": 0}
    # Bounded ancestor searches and one name scan keep option C linear on 1000-layer networks.
    # A projection only adds the path shortcut -> P -> add, which the order already has
    # shortcut before add, so the ancestry's topological positions stay valid.
    ancestry = residual.Ancestry(graph)
    namer = Namer(graph, ancestry.order)
    for nid in ancestry.order:
        node = graph.node(nid)
        if node.op != "add":
            continue
        a, b = graph.args(nid)
        sa, sb = graph.node(a).shape, graph.node(b).shape
        differ = sa != sb
        if not differ and mode != "C":
            continue
        pair = residual.residual_operands(graph, nid, ancestry)
        if pair is None:
            if broadcast(sa, sb) is not None:
                continue  # a broadcast of values that are not a residual (a bias, a scale)
            na, nb = graph.node(a), graph.node(b)
            raise ResdslError(
                f"{node.name}: operands {na.name} {fmt(sa)} (from {na.loc}) and {nb.name} {fmt(sb)} "
                f"(from {nb.loc}) differ in shape and neither feeds the other",
                node.loc,
                "a projection needs a shortcut that the branch is computed from",
            )
        shortcut, branch = pair
        if graph.node(shortcut).role in residual.SHORTCUT_ROLES:
            continue  # projected by an earlier run
        plan = residual.plan(graph, shortcut, branch, ancestry)
        if isinstance(plan, str):
            raise ResdslError(f"{node.name}: residual add cannot be projected: {plan}", node.loc)
        if mode == "A" and differ:
            new = _parameter_free(graph, node, shortcut, plan, namer)
            counts["parameter_free"] += 1
        elif mode == "A":
            continue
        else:
            new = _project(graph, node, shortcut, plan, namer)
            counts["projections"] += 1
        index = graph.args(nid).index(shortcut)
        graph.set_input(nid, index, new)
        graph.reinfer(nid)
        if graph.node(new).shape != graph.node(branch).shape:
            raise ResdslError(
                f"{node.name}: the projected shortcut is {fmt(graph.node(new).shape)}, "
                f"the branch {fmt(graph.node(branch).shape)}",
                node.loc,
                "make the branch's strides and padding keep the shortcut's grid (3x3 convolutions with padding 1)",
            )
    return PassResult(graph, any(counts.values()), counts)


def _project(graph: Graph, add, shortcut: int, plan: residual.Projection, namer: Namer) -> int:
    seed = graph.meta.get("seed", 0)
    scope = add.scope
    prefix = f"{scope}." if scope else ""
    loc = add.loc
    if plan.kind == "conv":
        conv = namer.fresh(f"{prefix}downsample.0")
        bn = namer.fresh(f"{prefix}downsample.1")
        w = graph.add_param(
            f"{conv}.weight",
            he_normal(seed, f"{conv}.weight", (plan.out_features, plan.in_features, 1, 1), plan.in_features),
            WEIGHT,
            loc,
            role="projection",
        )
        c = graph.add_node("conv2d", [shortcut, w], {"stride": plan.stride}, name=conv, loc=loc, role="projection")
        stats = [
            graph.add_param(f"{bn}.weight", np.ones(plan.out_features), WEIGHT, loc, role="projection"),
            graph.add_param(f"{bn}.bias", np.zeros(plan.out_features), WEIGHT, loc, role="projection"),
            graph.add_param(f"{bn}.running_mean", np.zeros(plan.out_features), BUFFER, loc, role="projection"),
            graph.add_param(f"{bn}.running_var", np.ones(plan.out_features), BUFFER, loc, role="projection"),
        ]
        return graph.add_node("batch_norm", [c, *stats], name=bn, loc=loc, role="projection")
    proj = namer.fresh(f"{prefix}proj")
    w = graph.add_param(
        f"{proj}.weight",
        he_normal(seed, f"{proj}.weight", (plan.out_features, plan.in_features), plan.in_features),
        WEIGHT,
        loc,
        role="projection",
    )
    return graph.add_node("linear", [shortcut, w], name=proj, loc=loc, role="projection")


def _parameter_free(graph: Graph, add, shortcut: int, plan: residual.Projection, namer: Namer) -> int:
    if plan.out_features < plan.in_features:
        raise ResdslError(
            f"{add.name}: option A cannot shrink {plan.in_features} features to {plan.out_features}",
            add.loc,
            "use --shortcut B to project instead",
        )
    prefix = f"{add.scope}." if add.scope else ""
    x = shortcut
    rank = len(graph.node(shortcut).shape)
    if plan.kind == "conv" and pair(plan.stride) != (1, 1):
        name = namer.fresh(f"{prefix}shortcut.stride")
        x = graph.add_node(
            "avg_pool2d", [x], {"kernel": 1, "stride": plan.stride}, name=name, loc=add.loc, role="shortcut"
        )
    extra = plan.out_features - plan.in_features
    if extra:
        axis = 1 if plan.kind == "conv" else rank - 1
        pads = [0] * (2 * rank)
        pads[axis] = extra // 2
        pads[rank + axis] = extra - extra // 2
        name = namer.fresh(f"{prefix}shortcut.pad")
        x = graph.add_node("pad", [x], {"pads": tuple(pads)}, name=name, loc=add.loc, role="shortcut")
    if x == shortcut:
        name = namer.fresh(f"{prefix}shortcut")
        x = graph.add_node("identity", [x], name=name, loc=add.loc, role="shortcut")
    return x

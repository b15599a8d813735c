"""Scale residual connections, changing the function on purpose (``--residual-scale``).

A residual add is y = s + F(s): one operand (the shortcut s) feeds the other (the
branch F(s)); a shortcut the shortcuts pass projected is recognised by its role.

- ``inv-depth``: y = s / L + F(s), with L the number of residual adds in the graph,
  the seed's scaling that keeps the shortcut path's contribution bounded with depth.
- a number alpha (e.g. ``0.2``): y = s + alpha F(s), the constant branch scaling of
  Inception-ResNet (Szegedy et al. 2016) that stabilises very deep networks.

Each scale is a ``mul`` by a constant parameter, with role ``residual_scale``; an add
with such an operand is already scaled, so a second run changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from resdsl.errors import ResdslError
from resdsl.ir import CONST, Graph
from resdsl.residual import Ancestry, residual_operands

from .base import Pass, PassResult, option, register_pass
from .patterns import Namer

ROLE = "residual_scale"
HINT = "use --residual-scale inv-depth, or a positive finite number such as 0.2"


def parse(text: str) -> str | float:
    """``"inv-depth"``, or alpha as a float; a ResdslError for anything else."""
    if text.strip().lower() == "inv-depth":
        return "inv-depth"
    try:
        alpha = float(text)
    except ValueError:
        raise ResdslError(f"unknown residual scale {text!r}", hint=HINT) from None
    if not math.isfinite(alpha) or alpha <= 0:
        raise ResdslError(f"residual scale {text!r} must be a positive finite number", hint=HINT)
    return alpha


def _scale(graph: Graph, add: int, operand: int, value: float, namer: Namer) -> None:
    node = graph.node(add)
    base = f"{node.scope}.{ROLE}" if node.scope else ROLE
    name = namer.fresh(base)
    const = graph.add_param(namer.fresh(f"{name}.value"), np.float32(value), CONST, node.loc, role=ROLE)
    mul = graph.add_node("mul", [operand, const], name=name, loc=node.loc, role=ROLE)
    graph.set_input(add, graph.args(add).index(operand), mul)


@register_pass
@dataclass(frozen=True)
class ScaleResiduals(Pass):
    """Scale residuals: shortcut by 1/L (inv-depth) or branch by a constant alpha."""

    name: ClassVar[str] = "scale_residuals"
    scale: str | None = option(None, flag="residual_scale", help="inv-depth, or ALPHA (x + ALPHA*F(x)); off by default")

    def __post_init__(self) -> None:
        if self.scale:
            parse(self.scale)  # a bad scale is an error where it is written, not when the pass runs

    def run(self, graph: Graph) -> PassResult:
        if not self.scale:
            return PassResult(graph, False, {"scaled": 0})
        return scale(graph, parse(self.scale))


def scale(graph: Graph, mode: str | float) -> PassResult:
    """Scale every residual add not yet scaled; an add already scaled still counts towards L."""
    ancestry = Ancestry(graph)
    residuals, done = [], 0
    for nid in ancestry.order:
        if graph.node(nid).op != "add":
            continue
        if any(graph.node(a).role == ROLE for a in graph.args(nid)):
            done += 1
            continue
        pair = residual_operands(graph, nid, ancestry)
        if pair is not None:
            residuals.append((nid, *pair))
    depth = len(residuals) + done
    namer = Namer(graph, ancestry.order)
    for add, shortcut, branch in residuals:
        if mode == "inv-depth":
            _scale(graph, add, shortcut, 1.0 / depth, namer)
        else:
            _scale(graph, add, branch, mode, namer)
    return PassResult(graph, bool(residuals), {"scaled": len(residuals)})

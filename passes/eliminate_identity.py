"""Remove ops that return their input unchanged: f(x) = x, so every use of f(x) can read x.

Identities recognised: ``identity``; ``dropout`` and ``stochastic_depth`` (identities at
inference, so a residual add behind them can still fuse into its conv); ``reshape`` and ``flatten`` whose output shape is
the input shape; ``transpose`` with the permutation (0, 1, ..., r-1); ``pad`` with all
pads zero; and a pooling window of 1x1 with stride 1 and no padding (the mean or max
of one element is that element; option-A shortcuts make such a pool when no stride is
needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from resdsl.ir import Graph, Node
from resdsl.shapes import fmt

from .base import Pass, PassResult, register_pass
from .patterns import Namer
from .rewrite import Match, Refusal, Rule, apply_rules

OPS = ("identity", "dropout", "stochastic_depth", "reshape", "flatten", "transpose", "pad", "avg_pool2d", "max_pool2d")


def _all(value, want: int) -> bool:
    values = value if isinstance(value, (tuple, list)) else (value,)
    return all(int(v) == want for v in values)


def check(graph: Graph, node: Node) -> Match | Refusal:
    """A match when ``node`` returns its input unchanged, else what it changes."""
    op, a = node.op, node.attrs
    if op in ("reshape", "flatten"):
        shape = graph.node(graph.args(node.id)[0]).shape
        if tuple(node.shape) != tuple(shape):
            return Refusal(f"it changes the shape {fmt(shape)} to {fmt(node.shape)}")
    elif op == "transpose" and tuple(a["perm"]) != tuple(range(len(a["perm"]))):
        return Refusal(f"the permutation {tuple(a['perm'])} moves axes")
    elif op == "pad" and not _all(a["pads"], 0):
        return Refusal(f"it pads by {tuple(a['pads'])}")
    elif op in ("avg_pool2d", "max_pool2d"):
        stride = a["stride"] if a["stride"] is not None else a["kernel"]
        if not (_all(a["kernel"], 1) and _all(stride, 1) and _all(a["padding"], 0)):
            return Refusal("its window is not 1x1 with stride 1 and no padding")
    return Match(node.id, {})


def rewrite(graph: Graph, match: Match, namer: Namer) -> int:
    return graph.args(match.root)[0]  # every use of f(x) reads x


IDENTITY = Rule("eliminate_identity", OPS, check, rewrite)


@register_pass
@dataclass(frozen=True)
class EliminateIdentity(Pass):
    """Drop identity ops, same-shape reshapes, identity transposes, zero pads and 1x1/1 pools."""

    name: ClassVar[str] = "eliminate_identity"
    rules: ClassVar[tuple[Rule, ...]] = (IDENTITY,)

    def run(self, graph: Graph) -> PassResult:
        report = apply_rules(graph, list(self.rules))
        removed = report.rewritten_ops[IDENTITY.name]
        return PassResult(graph, report.modified, {"removed": sum(removed.values()), **removed}, report)

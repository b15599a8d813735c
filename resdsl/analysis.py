"""Finding residual connections in a graph, and measuring signal propagation through them.

The seed's argument: with identity shortcuts, x_{l+1} = x_l + F(x_l), so the
block inputs' variance adds up with depth; replacing x + F(x) by x/L + F(x)
keeps it bounded. ``signal_propagation`` measures this at initialisation with
the reference interpreter instead of arguing it: for every residual block in
depth order it records the std of the block input (the shortcut operand), of
the branch F(x), and of the block output.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import ResdslError
from .interpreter import interpret, random_inputs
from .ir import Graph, Node
from .residual import SHORTCUT_ROLES, Ancestry, shortcut_pair

JOIN_OPS = ("add", "sum", "fused_conv")


@dataclass(frozen=True)
class Join:
    """A residual connection: the node that adds the shortcut to the branch."""

    node: int
    shortcut: int  # the operand arriving through the shortcut (a projection's output where projected)
    branch: int  # the operand computed by the residual branch F(x) (for fused_conv: the node itself)
    projected: bool  # the shortcut goes through nodes the compiler inserted (option A, B or C)


def _projected(graph: Graph, nid: int) -> bool:
    return graph.node(nid).role in SHORTCUT_ROLES


def _join_of(graph: Graph, node: Node, ancestry: Ancestry) -> Join | None:
    args = graph.args(node.id)
    if node.op == "fused_conv":  # the residual input z is the shortcut, the conv itself the branch
        if len(args) < 4:
            return None
        z = args[3]
        if _projected(graph, z) or ancestry.is_ancestor(z, args[0]):
            return Join(node.id, z, node.id, _projected(graph, z))
        return None
    operands = [a for a in args if graph.node(a).op != "param"]
    for i, a in enumerate(operands):
        for b in operands[i + 1 :]:
            pair = shortcut_pair(graph, a, b, ancestry)
            if pair is not None:
                return Join(node.id, pair[0], pair[1], _projected(graph, pair[0]))
    return None


def residual_joins(graph: Graph) -> list[Join]:
    """Every residual connection in topological (depth) order.

    A join is an add/sum whose shortcut operand feeds another operand (identity) or was
    inserted by the shortcuts pass (projection), or a fused_conv with a residual input z.
    Gated or scaled shortcuts (highway, x/L) are not recognised here: find them in the
    canonical graph and follow node ids, as ``signal_propagation`` does.
    """
    joins = []
    ancestry = Ancestry(graph)
    for nid in ancestry.order:
        node = graph.node(nid)
        if node.op in JOIN_OPS:
            join = _join_of(graph, node, ancestry)
            if join is not None:
                joins.append(join)
    return joins


@dataclass
class BlockStats:
    index: int
    name: str  # the join node
    scope: str
    projected: bool
    input_std: float  # std of the block input (the shortcut operand, before any residual scaling)
    branch_std: float  # std of F(x)
    output_std: float  # std of the join's result (x/L + F(x) when scaled)

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def _std(value: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return float(np.std(value, dtype=np.float64))


def signal_propagation(canonical: Graph, graph: Graph | None = None, batch: int = 2, seed: int = 0) -> list[BlockStats]:
    """Run ``graph`` at initialisation on random inputs and measure each residual block.

    ``canonical`` is the model as built (shortcuts inserted, residuals unscaled): its joins say
    what a block is. ``graph`` is what runs, by default ``canonical`` itself; the driver passes the
    graph after ``scale_residuals`` so that what is measured is what the compiler would emit.
    Joins are followed by node id (the scaling pass inserts nodes, it does not renumber), or by
    name where an id was rewritten.
    """
    joins = residual_joins(canonical)
    graph = canonical if graph is None else graph
    by_name = {n.name: n.id for n in graph.nodes()}

    def locate(nid: int) -> int | None:
        if nid in graph and graph.node(nid).name == canonical.node(nid).name:
            return nid
        return by_name.get(canonical.node(nid).name)

    wanted: dict[int, float] = {}
    targets = {}
    for j in joins:
        targets[j.node] = tuple(locate(n) for n in (j.shortcut, j.branch, j.node))
        for n in targets[j.node]:
            if n is not None:
                wanted[n] = math.nan
    feeds = random_inputs(graph, batch=batch, seed=seed)
    for nid in graph.inputs:
        if nid in wanted:
            wanted[nid] = _std(feeds[graph.node(nid).attrs["name"]])

    def observe(node: Node, value: np.ndarray) -> None:
        if node.id in wanted:
            wanted[node.id] = _std(value)

    with np.errstate(all="ignore"):  # an exploding signal is the finding, not an error
        interpret(graph, feeds, observe=observe)
    stats = []
    for i, j in enumerate(joins):
        s, b, o = (wanted.get(n, math.nan) if n is not None else math.nan for n in targets[j.node])
        node = canonical.node(j.node)
        stats.append(BlockStats(i, node.name, node.scope, j.projected, s, b, o))
    return stats


def format_table(stats: list[BlockStats]) -> str:
    """One line per residual block: the stds and the branch-to-input ratio."""
    lines = [f"{'#':>4}  {'block':<28} {'std(x)':>11} {'std(F(x))':>11} {'std(out)':>11} {'F/x':>8}"]
    for s in stats:
        ratio = s.branch_std / s.input_std if s.input_std and math.isfinite(s.input_std) else math.nan
        mark = " (projection)" if s.projected else ""
        lines.append(
            f"{s.index:>4}  {s.name:<28} {s.input_std:>11.4g} {s.branch_std:>11.4g} {s.output_std:>11.4g} "
            f"{ratio:>8.3g}{mark}"
        )
    return "\n".join(lines)


def plot(stats: list[BlockStats], path: str, title: str) -> None:
    """A log-scale plot of the stds by depth; needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ResdslError("plotting needs matplotlib, which is not installed", hint="pip install matplotlib") from None
    from .atomic import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4))
    depth = [s.index for s in stats]
    ax.semilogy(depth, [s.input_std for s in stats], label="std(x_l), block input")
    ax.semilogy(depth, [s.branch_std for s in stats], label="std(F(x_l)), branch")
    ax.set_xlabel("residual block")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.rsplit(".", 1)[-1] if "." in path else "png")
    plt.close(fig)

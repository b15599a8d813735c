"""Remove ops that return their input unchanged: f(x) = x, so every use of f(x) can read x.

Identities recognised: ``identity``; ``reshape`` and ``flatten`` whose output shape is
the input shape; ``transpose`` with the permutation (0, 1, ..., r-1); ``pad`` with all
pads zero; and a pooling window of 1x1 with stride 1 and no padding (the mean or max
of one element is that element; option-A shortcuts make such a pool when no stride is
needed).
"""

from __future__ import annotations

from resdsl.ir import Graph, Node

from .manager import PassOptions, PassResult, register_pass


def _all(value, want: int) -> bool:
    values = value if isinstance(value, (tuple, list)) else (value,)
    return all(int(v) == want for v in values)


def is_identity(graph: Graph, node: Node) -> bool:
    op, a = node.op, node.attrs
    if op == "identity":
        return True
    if op in ("reshape", "flatten"):
        return tuple(node.shape) == tuple(graph.node(graph.args(node.id)[0]).shape)
    if op == "transpose":
        return tuple(a["perm"]) == tuple(range(len(a["perm"])))
    if op == "pad":
        return _all(a["pads"], 0)
    if op in ("avg_pool2d", "max_pool2d"):
        stride = a["stride"] if a["stride"] is not None else a["kernel"]
        return _all(a["kernel"], 1) and _all(stride, 1) and _all(a["padding"], 0)
    return False


@register_pass("eliminate_identity")
def run(graph: Graph, options: PassOptions) -> PassResult:
    """Drop identity ops, same-shape reshapes, identity transposes, zero pads and 1x1/1 pools."""
    removed: dict[str, int] = {}
    for nid in graph.topo_order():
        node = graph.node(nid)
        if not is_identity(graph, node):
            continue
        graph.replace_all_uses(nid, graph.args(nid)[0])
        graph.remove(nid)
        removed[node.op] = removed.get(node.op, 0) + 1
    return PassResult(graph, bool(removed), {"removed": sum(removed.values()), **removed})

"""The reference interpreter: the meaning of a graph, computed with each op's NumPy reference."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from . import registry
from .feeds import TensorSpec, check_feeds
from .ir import Graph, Node


def check_inputs(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Match arrays to graph inputs by name, checking names, shapes, dtype and batch agreement."""
    specs = [TensorSpec(graph.node(i).attrs["name"], graph.node(i).shape, graph.node(i).dtype) for i in graph.inputs]
    check_feeds(specs, inputs, what="the model")
    return {nid: np.asarray(inputs[spec.name]) for nid, spec in zip(graph.inputs, specs)}


def interpret(
    graph: Graph,
    inputs: Mapping[str, np.ndarray],
    observe: Callable[[Node, np.ndarray], None] | None = None,
) -> dict[str, np.ndarray]:
    """Run the graph; ``observe(node, value)`` sees every computed value (used by analyses)."""
    values = check_inputs(graph, inputs)
    remaining = {nid: graph.num_uses(nid) for nid in graph.topo_order()}
    keep = {nid for _, nid in graph.outputs}
    for nid in graph.topo_order():
        node = graph.node(nid)
        if node.op == "input":
            continue
        if node.op == "param":
            values[nid] = graph.parameters[node.attrs["name"]]
            continue
        args = graph.args(nid)
        fn = registry.get(node.op).reference
        values[nid] = fn(*[values[a] for a in args], **node.attrs)
        if observe is not None:
            observe(node, values[nid])
        for a in args:  # free intermediates early: deep networks hold many
            remaining[a] -= 1
            if remaining[a] == 0 and a not in keep and graph.node(a).op != "param":
                values.pop(a, None)
    return {name: values[nid] for name, nid in graph.outputs}


def random_inputs(graph: Graph, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float inputs; integer inputs (indices) uniform below the smallest table they index."""
    rng = np.random.default_rng(seed)
    out = {}
    for nid in graph.inputs:
        n = graph.node(nid)
        shape = tuple(batch if isinstance(d, str) else d for d in n.shape)
        if n.dtype.startswith("int"):
            out[n.attrs["name"]] = rng.integers(0, index_bound(graph, nid), shape).astype(n.dtype)
        else:
            out[n.attrs["name"]] = rng.standard_normal(shape).astype(n.dtype)
    return out


def index_bound(graph: Graph, nid: int) -> int:
    """How many rows the tables indexed by ``nid`` have at least (2 when it indexes none)."""
    rows = [graph.node(graph.args(dst)[1]).shape[0] for dst, i in graph.uses(nid) if graph.node(dst).op == "embedding"]
    return min(rows) if rows else 2

"""The reference interpreter: the meaning of a graph, computed with each op's NumPy reference."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from . import registry
from .errors import ResdslError
from .ir import Graph, Node
from .shapes import fmt


def check_inputs(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Match arrays to graph inputs by name, checking shape and dtype; one clear error per mistake."""
    values: dict[int, np.ndarray] = {}
    names = {graph.node(i).attrs["name"]: i for i in graph.inputs}
    extra = sorted(set(inputs) - set(names))
    if extra:
        raise ResdslError(f"unknown input {', '.join(extra)}; the model takes {', '.join(names)}")
    batch = None
    for name, nid in names.items():
        if name not in inputs:
            raise ResdslError(f"missing input {name!r} of shape {fmt(graph.node(nid).shape)}")
        arr = np.asarray(inputs[name])
        want = graph.node(nid).shape
        ok = arr.ndim == len(want) and all(isinstance(w, str) or w == d for w, d in zip(want, arr.shape))
        if ok and isinstance(want[0], str):
            batch = arr.shape[0] if batch is None else batch
            ok = arr.shape[0] == batch
        if not ok:
            raise ResdslError(f"input {name!r} has shape {arr.shape}, the model expects {fmt(want)}")
        if arr.dtype != np.float32:
            raise ResdslError(f"input {name!r} has dtype {arr.dtype}, the model expects float32")
        values[nid] = arr
    return values


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
    rng = np.random.default_rng(seed)
    out = {}
    for nid in graph.inputs:
        n = graph.node(nid)
        shape = tuple(batch if isinstance(d, str) else d for d in n.shape)
        out[n.attrs["name"]] = rng.standard_normal(shape).astype(np.float32)
    return out

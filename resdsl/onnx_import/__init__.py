"""ONNX import: an ONNX file (opsets 13-20) -> a resdsl IR graph, for every command that takes a model.

``import_onnx`` reads and checks the file (``reader``), converts node by node (``convert``, ``ops``),
folding shape arithmetic to constants (``fold``), drops what the outputs do not use, and marks
projection shortcuts (``joins``) so that show, analyze and the passes see the residual joins.
Every node carries an ``OnnxLoc`` naming the ONNX node it came from.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..errors import ResdslError
from ..ir import Graph
from . import ops  # noqa: F401  (registers the converters of the parameter-free ops)
from .convert import Importer, sanitise, supported
from .joins import mark_projections
from .reader import OnnxLoc, input_shape, load

__all__ = ["OnnxLoc", "import_onnx", "is_onnx", "sanitise"]


def is_onnx(path: str) -> bool:
    return str(path).lower().endswith(".onnx")


def _unsupported(model, path: str) -> None:
    """One error naming every op type resdsl cannot express, and the nodes that use it."""
    where: dict[str, list[str]] = {}
    for i, node in enumerate(model.graph.node):
        custom = node.domain not in ("", "ai.onnx")
        if custom or not supported(node.op_type):
            key = f"{node.domain}.{node.op_type}" if custom else node.op_type
            where.setdefault(key, []).append(node.name or f"#{i}")
    if where:
        parts = []
        for op, names in where.items():
            shown = ", ".join(repr(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            parts.append(f"{op} (nodes {shown})")
        raise ResdslError(
            f"{path} uses ops resdsl cannot express: {'; '.join(parts)}",
            hint="see 'resdsl import --help' for the supported ONNX ops",
        )


def model_name(path: str) -> str:
    """A Python identifier from the file name: the model's name in show and in an imported DSL file."""
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    return stem if stem and not stem[0].isdigit() else f"model_{stem}"


def import_onnx(path: str) -> Graph:
    """The raw resdsl graph of an ONNX file; ``graph.meta["onnx_names"]`` maps parameters to initializers."""
    from onnx import numpy_helper

    model = load(path)
    _unsupported(model, path)
    graph = Graph(model_name(path))
    im = Importer(graph, path)
    initializers = {t.name for t in model.graph.initializer}
    for t in model.graph.initializer:
        im.values[t.name] = numpy_helper.to_array(t)
    for vi in (v for v in model.graph.input if v.name not in initializers):
        elem = vi.type.tensor_type.elem_type
        dtype = {1: "float32", 7: "int64"}.get(elem)
        if dtype is None:
            raise ResdslError(f"{path}: input {vi.name!r} has element type {elem}; resdsl takes float32 or int64")
        name = im.fresh(sanitise(vi.name))
        im.values[vi.name] = graph.add_input(name, input_shape(vi, path), OnnxLoc(path, 0, vi.name, "input"), dtype)
    im.run(list(model.graph.node))
    for vi in model.graph.output:
        value = im.values.get(vi.name)
        if value is None or isinstance(value, np.ndarray):
            raise ResdslError(f"{path}: output {vi.name!r} is a constant or missing; resdsl compiles computed outputs")
        graph.set_output(sanitise(vi.name), value)
    _drop_unused(graph)
    mark_projections(graph)
    graph.meta.update(
        source=path,
        model=graph.name,
        arguments={},
        shortcut="B",
        seed=0,
        onnx_names={k: v for k, v in im.names.items() if k in graph.parameters},
    )
    graph.verify()
    return graph


def _drop_unused(graph: Graph) -> None:
    """Remove nodes no output needs (the pieces of a fused pattern, unused constants)."""
    live: set[int] = set()
    stack = [nid for _, nid in graph.outputs]
    while stack:
        nid = stack.pop()
        if nid not in live:
            live.add(nid)
            stack.extend(graph.args(nid))
    dead = [n.id for n in graph.nodes() if n.id not in live and n.id not in graph.inputs]
    if dead:
        graph.remove_many(dead)

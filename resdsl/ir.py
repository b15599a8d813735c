"""The IR: a dataflow graph of single-output ops over a networkx MultiDiGraph.

Edges ``(producer, consumer, key=input_index)`` are the single source of truth
for dataflow, so ``add(x, x)`` is two parallel edges. Node ids grow with
creation order, and every traversal breaks ties by id: the same model file
always yields the same order, names and backend bytes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from . import registry
from .errors import ResdslError, SourceLoc
from .ops.cast import is_float, numpy_dtype
from .shapes import Shape, fmt

# Parameter kinds: trained weights, running statistics, and compiler constants.
WEIGHT, BUFFER, CONST = "weight", "buffer", "const"
# The integer dtypes a parameter may have: quantized weights (int8, uint8) and biases (int32).
# An array given in one of them keeps it; any other (int64, float64, lists) becomes float32.
INTEGER_PARAM_DTYPES = ("int8", "uint8", "int32")


@dataclass(frozen=True)
class CheckpointConvention:
    """How checkpoints are read and which of their keys carry no value for inference.

    The IR knows no file format and no framework's naming: ``resdsl.weights`` registers
    the convention (PyTorch's ``num_batches_tracked`` counters, .safetensors/.npz/.pt files).
    """

    read: Callable[[str], Mapping[str, Any]]
    is_bookkeeping: Callable[[str], bool]


_convention: list[CheckpointConvention] = []


def register_checkpoint_convention(convention: CheckpointConvention) -> None:
    _convention[:] = [convention]


@dataclass
class Node:
    id: int
    op: str
    attrs: dict[str, Any]
    shape: Shape
    dtype: str
    name: str
    loc: SourceLoc | None = None
    # Locations of nodes a rewrite replaced, so errors in fused code point home.
    origins: tuple[SourceLoc, ...] = field(default_factory=tuple)
    # What the compiler made this node for ("projection", "shortcut", "residual"): shown by viz and show.
    role: str | None = None

    @property
    def scope(self) -> str:
        return self.name.rsplit(".", 1)[0] if "." in self.name else ""


class Graph:
    def __init__(self, name: str = "model") -> None:
        self.name = name
        self._g = nx.MultiDiGraph()
        self._next_id = 0
        self.inputs: list[int] = []
        self.outputs: list[tuple[str, int]] = []
        self.parameters: dict[str, np.ndarray] = {}
        self.param_kind: dict[str, str] = {}
        self.meta: dict[str, Any] = {}

    # ------------------------------------------------------------ building

    def add_node(
        self,
        op: str,
        inputs: Iterable[int] = (),
        attrs: Mapping[str, Any] | None = None,
        name: str | None = None,
        loc: SourceLoc | None = None,
        shape: Shape | None = None,
        origins: tuple[SourceLoc, ...] = (),
        role: str | None = None,
    ) -> int:
        """Add a node; infer its shape unless ``shape`` is given (used for pending residuals)."""
        opdef = registry.get(op)
        inputs = list(inputs)
        try:
            attrs = opdef.prepare(attrs, len(inputs))
            if shape is None:
                shape = tuple(opdef.infer([self.node(i).shape for i in inputs], attrs))
            dtype = opdef.dtype([self.node(i).dtype for i in inputs], attrs)
        except registry.ShapeError as e:
            raise ResdslError(str(e), loc) from None
        bad = [d for d in shape if isinstance(d, int) and d < 1]
        if bad:  # no backend runs an empty tensor
            what = f"{op} {name}" if name else op
            raise ResdslError(
                f"{what} would have shape {fmt(tuple(shape))}, with a dimension of size {bad[0]}",
                loc,
                "check the model's arguments: a channel, class or spatial size is 0 or too small",
            )
        nid = self._next_id
        self._next_id += 1
        node = Node(nid, op, attrs, tuple(shape), dtype, name or f"{op}_{nid}", loc, origins, role)
        self._g.add_node(nid, node=node)
        for index, src in enumerate(inputs):
            self._g.add_edge(src, nid, key=index)
        return nid

    def add_param(
        self, name: str, value: np.ndarray, kind: str = WEIGHT, loc: SourceLoc | None = None, role: str | None = None
    ) -> int:
        if name in self.parameters:
            raise ResdslError(f"parameter {name!r} is defined twice", loc, "give the layer a distinct name=")
        value = _param_array(value)
        self.parameters[name] = value
        self.param_kind[name] = kind
        attrs = {"name": name, "shape": value.shape, "dtype": str(value.dtype)}
        return self.add_node("param", (), attrs, name=name, loc=loc, role=role)

    def add_input(self, name: str, shape: Shape, loc: SourceLoc | None = None, dtype: str = "float32") -> int:
        nid = self.add_node("input", (), {"name": name, "shape": tuple(shape), "dtype": dtype}, name=name, loc=loc)
        self.inputs.append(nid)
        return nid

    def set_output(self, name: str, nid: int) -> None:
        self.outputs.append((name, nid))

    # ------------------------------------------------------------ queries

    def node(self, nid: int) -> Node:
        return self._g.nodes[nid]["node"]

    def __contains__(self, nid: int) -> bool:
        return nid in self._g

    def __len__(self) -> int:
        return self._g.number_of_nodes()

    def nodes(self) -> Iterator[Node]:
        for nid in self.topo_order():
            yield self.node(nid)

    def args(self, nid: int) -> list[int]:
        """Producers of ``nid``'s inputs, in input order."""
        edges = sorted(self._g.in_edges(nid, keys=True), key=lambda e: e[2])
        return [src for src, _, _ in edges]

    def uses(self, nid: int) -> list[tuple[int, int]]:
        """A snapshot of ``(consumer, input_index)`` pairs, safe to iterate while rewriting."""
        return sorted((dst, key) for _, dst, key in self._g.out_edges(nid, keys=True))

    def output_uses(self, nid: int) -> list[str]:
        return [name for name, o in self.outputs if o == nid]

    def num_uses(self, nid: int) -> int:
        return len(self.uses(nid)) + len(self.output_uses(nid))

    def topo_order(self) -> list[int]:
        return list(nx.lexicographical_topological_sort(self._g))

    def is_ancestor(self, a: int, b: int) -> bool:
        """True when ``a`` feeds ``b`` through some path (``a`` != ``b``)."""
        return a != b and nx.has_path(self._g, a, b)

    def param_value(self, nid: int) -> np.ndarray | None:
        n = self.node(nid)
        return self.parameters[n.attrs["name"]] if n.op == "param" else None

    def count_ops(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for nid in self._g.nodes:
            op = self.node(nid).op
            counts[op] = counts.get(op, 0) + 1
        return dict(sorted(counts.items()))

    def compute_nodes(self) -> list[Node]:
        return [n for n in self.nodes() if n.op not in ("input", "param")]

    # ------------------------------------------------------------ rewriting

    def replace_all_uses(self, old: int, new: int) -> None:
        for dst, key in self.uses(old):
            self._g.remove_edge(old, dst, key=key)
            self._g.add_edge(new, dst, key=key)
        self.outputs = [(name, new if o == old else o) for name, o in self.outputs]

    def set_input(self, nid: int, index: int, src: int) -> None:
        for s, _, k in list(self._g.in_edges(nid, keys=True)):
            if k == index:
                self._g.remove_edge(s, nid, key=k)
        self._g.add_edge(src, nid, key=index)

    def set_inputs(self, nid: int, srcs: list[int]) -> None:
        for s, _, k in list(self._g.in_edges(nid, keys=True)):
            self._g.remove_edge(s, nid, key=k)
        for index, src in enumerate(srcs):
            self._g.add_edge(src, nid, key=index)

    def replace_node(self, nid: int, op: str, inputs: Iterable[int], attrs: Mapping[str, Any] | None = None) -> None:
        """Make ``nid`` compute ``op(inputs){attrs}`` in place: its id, name, location and uses stay.

        A rewrite that fuses nodes into one keeps the survivor's identity this way, so
        names (and the weights named after them) do not change; the shape is re-inferred.
        """
        node = self.node(nid)
        opdef = registry.get(op)
        inputs = list(inputs)
        try:
            attrs = opdef.prepare(attrs, len(inputs))
        except registry.ShapeError as e:
            raise ResdslError(f"{node.name}: {e}", node.loc, origins=node.origins) from None
        node.op, node.attrs = op, attrs
        self.set_inputs(nid, inputs)
        self.reinfer(nid)

    def inherit(self, nid: int, replaced: Iterable[int]) -> None:
        """Record on ``nid`` the source locations of the nodes a rewrite folded into it."""
        node = self.node(nid)
        locs = list(node.origins)
        for old in (self.node(r) for r in replaced):
            for loc in (old.loc, *old.origins):
                if loc is not None and loc != node.loc and loc not in locs:
                    locs.append(loc)
        node.origins = tuple(locs)

    def set_param(self, name: str, value: np.ndarray, kind: str | None = None, dtype: str | None = None) -> None:
        """Give parameter ``name`` a new array (same shape); arrays are shared by copies, so never written into.

        The array keeps the parameter's dtype unless ``dtype`` (float16, bfloat16: ``convert_dtype``)
        is given, which becomes the dtype of the array and of its nodes."""
        if name not in self.parameters:
            raise KeyError(f"no parameter {name!r}")
        was = str(self.parameters[name].dtype)
        dtype = was if dtype is None else dtype
        value = np.array(value, dtype=numpy_dtype(dtype), order="C")
        if value.shape != self.parameters[name].shape:
            raise ValueError(f"parameter {name!r}: new shape {value.shape} != {self.parameters[name].shape}")
        self.parameters[name] = value
        if kind is not None:
            self.param_kind[name] = kind
        if dtype != was:  # the nodes naming it take its dtype (a scan only when it changes)
            for n in self._g.nodes:
                node = self.node(n)
                if node.op == "param" and node.attrs["name"] == name:
                    node.attrs["dtype"] = node.dtype = dtype

    def remove(self, nid: int) -> None:
        """Remove a node that nothing uses; a parameter node also drops its array."""
        self.remove_many([nid])

    def remove_many(self, nids: Iterable[int]) -> None:
        """Remove nodes that nothing outside the set uses; drop arrays no remaining param node names.

        One scan of the graph for the whole set, where ``remove`` scans once per parameter:
        a pass deleting thousands of batch-norm statistics stays linear.
        """
        doomed = set(nids)
        for nid in sorted(doomed):
            node = self.node(nid)
            if nid in self.inputs:
                raise ValueError(f"cannot remove graph input {node.name}")
            if self.output_uses(nid) or any(dst not in doomed for dst, _ in self.uses(nid)):
                raise ValueError(f"cannot remove {node.name}: it still has uses")
        names = {self.node(n).attrs["name"] for n in doomed if self.node(n).op == "param"}
        self._g.remove_nodes_from(doomed)
        if names:  # the scan is the cost of removing a parameter: none to remove, no scan
            names -= {self.node(n).attrs["name"] for n in self._g.nodes if self.node(n).op == "param"}
        for name in names:
            self.parameters.pop(name, None)
            self.param_kind.pop(name, None)

    def reinfer(self, nid: int) -> None:
        """Recompute one node's shape and dtype after its inputs changed."""
        node = self.node(nid)
        opdef = registry.get(node.op)
        try:
            node.shape = tuple(opdef.infer([self.node(i).shape for i in self.args(nid)], node.attrs))
            node.dtype = opdef.dtype([self.node(i).dtype for i in self.args(nid)], node.attrs)
        except registry.ShapeError as e:
            raise ResdslError(str(e), node.loc, origins=node.origins) from None

    def copy(self) -> Graph:
        """A deep copy whose arrays are shared (passes replace arrays, never mutate them)."""
        g = Graph(self.name)
        g._g = nx.MultiDiGraph()
        for nid in self._g.nodes:
            g._g.add_node(nid, node=copy.copy(self.node(nid)))
            g.node(nid).attrs = dict(self.node(nid).attrs)
        g._g.add_edges_from(self._g.edges(keys=True))
        g._next_id = self._next_id
        g.inputs = list(self.inputs)
        g.outputs = list(self.outputs)
        g.parameters = dict(self.parameters)
        g.param_kind = dict(self.param_kind)
        g.meta = copy.deepcopy(self.meta)
        return g

    # ------------------------------------------------------------ checking

    def verify(self) -> None:
        """Check structure and shapes; raise ResdslError naming the node, its source line and what was fused into it."""
        if not nx.is_directed_acyclic_graph(self._g):
            cycle = nx.find_cycle(self._g)
            raise ResdslError(f"graph has a cycle through {self.node(cycle[0][0]).name}")
        names: dict[str, int] = {}
        for nid in self.topo_order():
            node = self.node(nid)
            if node.name in names:
                raise ResdslError(f"two nodes are named {node.name!r}", node.loc, "names must be unique", node.origins)
            names[node.name] = nid
            opdef = registry.get(node.op)
            args = self.args(nid)
            keys = sorted(k for _, _, k in self._g.in_edges(nid, keys=True))
            if keys != list(range(len(args))):
                raise ResdslError(f"{node.name}: input indices {keys} have gaps", node.loc, origins=node.origins)
            if not opdef.arity_ok(len(args)):
                raise ResdslError(
                    f"{node.name}: {node.op} takes {opdef.inputs}, has {len(args)} inputs",
                    node.loc,
                    origins=node.origins,
                )
            if node.op == "param":
                pname = node.attrs["name"]
                if pname not in self.parameters:
                    raise ResdslError(f"{node.name}: parameter {pname!r} has no value", node.loc)
                if tuple(self.parameters[pname].shape) != tuple(node.shape):
                    raise ResdslError(f"{node.name}: value shape {self.parameters[pname].shape} != {fmt(node.shape)}")
                if str(self.parameters[pname].dtype) != node.dtype:
                    raise ResdslError(f"{node.name}: value dtype {self.parameters[pname].dtype} != {node.dtype}")
                continue
            if node.op == "input":
                if nid not in self.inputs:
                    raise ResdslError(f"{node.name}: input node is not a graph input", node.loc)
                continue
            try:
                want = tuple(opdef.infer([self.node(i).shape for i in args], node.attrs))
            except registry.ShapeError as e:
                raise ResdslError(f"{node.name}: {e}", node.loc, _residual_hint(node), node.origins) from None
            if want != tuple(node.shape):
                raise ResdslError(
                    f"{node.name}: recorded shape {fmt(node.shape)} but {node.op} gives {fmt(want)}",
                    node.loc,
                    origins=node.origins,
                )
            self._verify_dtype(node, args, opdef)
        for nid in self.inputs:
            if nid not in self._g:
                raise ResdslError(f"graph input {nid} was removed")
        if not self.outputs:
            raise ResdslError(f"model {self.name!r} has no outputs", hint="return nn.output(name, x)")
        for name, nid in self.outputs:
            if nid not in self._g:
                raise ResdslError(f"output {name!r} refers to a removed node")

    def _verify_dtype(self, node: Node, args: list[int], opdef: registry.OpDef) -> None:
        """The dtype rule must give the recorded dtype; an op's float inputs share one dtype (only ``cast``
        changes it), and only ``dequantize`` reads quantized integers."""
        dtypes = [self.node(a).dtype for a in args]
        integer = [self.node(a).name for a in args if self.node(a).dtype in INTEGER_PARAM_DTYPES]
        if integer and node.op != "dequantize":
            raise ResdslError(
                f"{node.name}: {node.op} reads the quantized integer value {integer[0]}; only dequantize reads them",
                node.loc,
                origins=node.origins,
            )
        floats = sorted({d for d in dtypes if is_float(d)})
        if node.op != "cast" and len(floats) > 1:
            what = ", ".join(f"{self.node(a).name}: {d}" for a, d in zip(args, dtypes))
            raise ResdslError(f"{node.name}: {node.op} mixes float dtypes ({what})", node.loc, origins=node.origins)
        try:
            want = opdef.dtype(dtypes, node.attrs)
        except registry.ShapeError as e:
            raise ResdslError(f"{node.name}: {e}", node.loc, origins=node.origins) from None
        if want != node.dtype:
            raise ResdslError(f"{node.name}: recorded dtype {node.dtype} but {node.op} gives {want}", node.loc)

    # ------------------------------------------------------------ state

    def num_parameters(self) -> int:
        """Trainable parameters: weights, not batch-norm running statistics."""
        return int(sum(v.size for k, v in self.parameters.items() if self.param_kind[k] == WEIGHT))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights and buffers, named as a PyTorch state_dict would name them."""
        return {k: v for k, v in sorted(self.parameters.items()) if self.param_kind[k] != CONST}

    def load_weights(self, mapping: Mapping[str, Any], strict: bool = True) -> list[str]:
        """Replace parameters by name; report every missing, unexpected and mis-shaped key at once."""
        own = self.state_dict()
        drop = _convention[0].is_bookkeeping if _convention else (lambda key: False)
        given = {k: v for k, v in mapping.items() if not drop(k)}
        missing = sorted(set(own) - set(given))
        unexpected = sorted(set(given) - set(own))
        bad = []
        for k in sorted(set(own) & set(given)):
            shape = tuple(np.shape(given[k]))
            if shape != own[k].shape:
                bad.append(f"{k}: expected {fmt(own[k].shape)}, got {fmt(shape)}")
        problems = []
        if bad:
            problems.append("mis-shaped: " + "; ".join(bad))
        if strict and missing:
            problems.append("missing: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected: " + ", ".join(unexpected))
        if problems:
            raise ResdslError(
                f"weights do not fit model {self.name!r}: " + " | ".join(problems),
                hint="check the checkpoint matches the model and its arguments, or pass strict=False",
            )
        for k in sorted(set(own) & set(given)):
            self.parameters[k] = np.array(given[k], dtype=np.float32, order="C")
        return missing

    def load_weights_file(self, path: str, strict: bool = True) -> list[str]:
        """Load a checkpoint file by parameter name, read by the registered convention (resdsl.weights)."""
        if not _convention:
            raise ResdslError("no checkpoint reader is registered", hint="import resdsl (it registers resdsl.weights)")
        return self.load_weights(_convention[0].read(path), strict=strict)

    # ------------------------------------------------------------ text

    def to_text(self) -> str:
        """A readable listing: one line per compute node, parameters summarised."""
        lines = [f"graph {self.name}("]
        for nid in self.inputs:
            n = self.node(nid)
            lines.append(f"  %{n.name}: {_short(n.dtype)}{fmt(n.shape)}")
        lines.append(f") params={len(self.parameters)} ({self.num_parameters():,} trainable) {{")
        for n in self.nodes():
            if n.op in ("input", "param"):
                continue
            args = ", ".join("%" + self.node(a).name for a in self.args(n.id))
            attrs = ", ".join(f"{k}={v}" for k, v in n.attrs.items() if v not in (None,))
            attrs = f" {{{attrs}}}" if attrs else ""
            lines.append(f"  %{n.name} = {n.op}({args}){attrs} : {_short(n.dtype)}{fmt(n.shape)}")
        outs = ", ".join(f"{name}=%{self.node(nid).name}" for name, nid in self.outputs)
        lines.append(f"  return {outs}")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        lines = [f'digraph "{self.name}" {{', "  rankdir=TB; node [shape=box, fontsize=10];"]
        for n in self.nodes():
            if n.op == "param":
                continue
            lines.append(f'  n{n.id} [label="{n.name}\\n{n.op} {fmt(n.shape)}"];')
        for src, dst, _ in self._g.edges(keys=True):
            if self.node(src).op != "param":
                lines.append(f"  n{src} -> n{dst};")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _param_array(value: Any) -> np.ndarray:
    """A C-contiguous float32 array (0-d scalars stay 0-d), or int8/uint8/int32 when given so."""
    dtype = np.asarray(value).dtype
    if str(dtype) in INTEGER_PARAM_DTYPES:
        return np.array(value, dtype=dtype, order="C")
    return np.array(value, dtype=np.float32, order="C")


def _short(dtype: str) -> str:
    """The listing's dtype spelling: f32, f16, bf16 (others as they are)."""
    return {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}.get(dtype, dtype)


def _residual_hint(node: Node) -> str | None:
    if node.op == "add":
        return "operands of a residual add differ: run the 'shortcuts' pass to insert a projection"
    return None

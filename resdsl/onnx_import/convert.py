"""ONNX nodes -> resdsl IR nodes, one converter per op type.

A value of the ONNX graph is either a node of the resdsl graph (an ``int`` id) or a NumPy
constant (initializers, Constant nodes, folded shape arithmetic). A constant becomes a parameter
only where an op consumes it as data: a layer's weights keep the layer's name (``conv1.weight``,
from the initializer name where it has that form, else from the node name), free constants become
CONST parameters. ``Importer.names`` maps every parameter back to its ONNX initializer.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ResdslError
from ..ir import BUFFER, CONST, WEIGHT, Graph
from .fold import BATCH_MARK, FOLD_ONLY, FOLDERS, check_marks, fold
from .reader import OnnxLoc

_BAD = re.compile(r"[^A-Za-z0-9_.]")


def sanitise(name: str) -> str:
    """A name every backend and the DSL accept: [A-Za-z0-9_.] with no empty dotted part."""
    parts = [p for p in _BAD.sub("_", name).split(".") if p]
    return ".".join(parts) or "value"


def layer_name(node, weight: str | None) -> str:
    """``conv1`` for weight ``conv1.weight``; else the node's scope path (``/layer1/layer1.0/conv1/Conv``
    -> ``layer1.0.conv1``, dropping PyTorch's repeated prefixes and the op suffix)."""
    if weight and weight.endswith(".weight") and not weight.startswith("onnx::"):
        return sanitise(weight[: -len(".weight")])
    parts = [p for p in node.name.split("/") if p]
    if len(parts) > 1:
        parts = parts[:-1]
    kept = [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
    return sanitise(".".join(kept) if kept else node.name or node.op_type.lower())


class Importer:
    """The state of one import: the graph, the ONNX values, and the parameter-name mapping."""

    def __init__(self, graph: Graph, path: str) -> None:
        self.graph, self.path = graph, path
        self.values: dict[str, int | np.ndarray] = {}
        self.names: dict[str, str] = {}  # resdsl parameter -> ONNX initializer or constant
        self.used_names: set[str] = set()
        self.const_params: dict[str, int] = {}
        self.skip: set[int] = set()  # ONNX node indices a pattern absorbed
        self.consumers: dict[str, list[int]] = {}
        self.nodes: list = []
        self.loc: OnnxLoc | None = None
        self.node = None

    # ------------------------------------------------------------ values

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.used_names:
            name, k = f"{base}_{k}", k + 1
        self.used_names.add(name)
        return name

    def const(self, name: str) -> np.ndarray | None:
        v = self.values.get(name) if name else None
        return v if isinstance(v, np.ndarray) else None

    def need_const(self, index: int, what: str) -> np.ndarray:
        names = list(self.node.input)
        value = self.const(names[index]) if index < len(names) else None
        if value is None:
            self.fail(f"its {what} must be a constant")
        return value

    def param(self, value: np.ndarray, name: str, onnx_name: str, kind: str = WEIGHT) -> int:
        pname = self.fresh(name)
        self.names[pname] = onnx_name
        return self.graph.add_param(pname, value, kind, self.loc)

    def tensor(self, name: str) -> int:
        """The graph node of ONNX value ``name``; a constant operand becomes a CONST parameter."""
        v = self.values[name]
        if isinstance(v, np.ndarray):  # one parameter per constant; the value stays for later folding
            if name not in self.const_params:
                pname = sanitise(f"{self.layer()}.{name.rsplit('/', 1)[-1]}")
                self.const_params[name] = self.param(v.astype(np.float32), pname, name, CONST)
            return self.const_params[name]
        return v

    def add(self, op: str, inputs: list[int], attrs: dict | None = None, name: str | None = None) -> int:
        return self.graph.add_node(op, inputs, attrs, name=self.fresh(name or self.layer()), loc=self.loc)

    def layer(self, weight: str | None = None) -> str:
        return layer_name(self.node, weight)

    def shape(self, nid: int) -> tuple:
        return self.graph.node(nid).shape

    def fail(self, message: str, hint: str | None = None):
        raise ResdslError(message, self.loc, hint)

    # ------------------------------------------------------------ the walk

    def run(self, nodes: list) -> None:
        self.nodes = nodes
        for i, node in enumerate(nodes):
            for name in node.input:
                self.consumers.setdefault(name, []).append(i)
        for i, node in enumerate(nodes):
            if i in self.skip:
                continue
            self.node, self.loc = node, OnnxLoc(self.path, i, node.name or node.output[0], node.op_type)
            attrs = attributes(node)
            inputs = [self.values.get(n) if n else None for n in node.input]
            missing = [n for n, v in zip(node.input, inputs) if n and v is None]
            if missing:
                self.fail(f"input {missing[0]!r} is not produced by any earlier node")
            if node.op_type in FOLDERS and all(v is None or isinstance(v, np.ndarray) for v in inputs):
                if node.op_type not in ("Add", "Sub", "Mul", "Div") or all(v is not None for v in inputs):
                    self.set_outputs(fold(node.op_type, attrs, inputs))
                    continue
            if node.op_type == "Shape":
                self.set_outputs(self.shape_of(inputs[0], attrs))
                continue
            if node.op_type in FOLD_ONLY:
                self.fail(f"{node.op_type} is supported only on constants (shape arithmetic), here it computes on data")
            out = CONVERTERS[node.op_type](self, attrs, list(node.input))
            self.set_outputs(out)

    def set_outputs(self, value) -> None:
        if isinstance(value, np.ndarray) and not check_marks(value):
            self.fail(
                "a size computed here depends on the batch size", "export with a static batch or flatten with 0/-1"
            )
        self.values[self.node.output[0]] = value

    def shape_of(self, value, attrs: dict) -> np.ndarray:
        if isinstance(value, np.ndarray):
            dims = list(value.shape)
        else:
            dims = [BATCH_MARK if isinstance(d, str) else d for d in self.shape(value)]
        start, end = attrs.get("start", 0), attrs.get("end", len(dims))
        return np.array(dims[start:end], np.int64)

    # ------------------------------------------------------------ layout helpers

    def reshape_to(self, x: int, target: list) -> int:
        """Reshape ``x`` to ``target`` (ints, BATCH_MARK or -1), keeping the batch symbolic at axis 0."""
        shape = self.shape(x)
        target = [int(d) for d in target]
        if isinstance(shape[0], str):
            if target and target[0] in (BATCH_MARK, -1) and (target[0] == BATCH_MARK or -1 not in target[1:]):
                target[0] = 0
            if BATCH_MARK in target:
                self.fail("the batch dimension moves away from axis 0, which resdsl cannot express")
        elif BATCH_MARK in target:
            target = [shape[0] if d == BATCH_MARK else d for d in target]
        if list(self.shape(x)) == [s for s in target]:
            return x
        return self.add("reshape", [x], {"shape": tuple(target)})


def attributes(node) -> dict:
    from onnx import helper, numpy_helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if hasattr(v, "dims"):  # a TensorProto
            v = numpy_helper.to_array(v)
        elif isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


CONVERTERS: dict = {}


def converter(*op_types: str):
    def wrap(fn):
        for op in op_types:
            CONVERTERS[op] = fn
        return fn

    return wrap


def supported(op_type: str) -> bool:
    return op_type in CONVERTERS or op_type in FOLDERS or op_type == "Constant"


@converter("Constant")
def _constant(im: Importer, a: dict, ins: list):
    from onnx import numpy_helper  # noqa: F401  (attributes already decoded the tensor)

    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            v = np.asarray(a[key])
            return v.astype(np.int64) if key.startswith("value_int") else v
    im.fail("only value, value_float(s) and value_int(s) constants are supported")


def _scalar(v: np.ndarray | None, default: float) -> float:
    return default if v is None else float(np.asarray(v).reshape(-1)[0])


# ------------------------------------------------------------ convolution and dense


def _pads_2d(im: Importer, a: dict, x: int, kernel: tuple, strides: tuple, dilations: tuple) -> list[int]:
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        return list(a.get("pads", [0, 0, 0, 0])) if auto == "NOTSET" else [0, 0, 0, 0]
    pads = [0, 0, 0, 0]
    for i, (size, k, s, d) in enumerate(zip(im.shape(x)[2:], kernel, strides, dilations)):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        pads[i], pads[i + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
    return pads


@converter("Conv", "ConvTranspose")
def _conv(im: Importer, a: dict, ins: list):
    w = im.need_const(1, "weight")
    if w.ndim != 4:
        im.fail(f"only 2-D convolutions are supported (weight has rank {w.ndim})")
    x = im.tensor(ins[0])
    kernel = tuple(a.get("kernel_shape", w.shape[2:]))
    strides, dilations = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
    pads = _pads_2d(im, a, x, kernel, strides, dilations)
    attrs = {"stride": strides, "dilation": dilations, "groups": a.get("group", 1)}
    transposed = im.node.op_type == "ConvTranspose"
    if transposed:
        if "output_shape" in a:
            im.fail("ConvTranspose with output_shape is not supported; export with explicit pads")
        if pads[:2] != pads[2:]:
            im.fail(f"ConvTranspose with asymmetric pads {pads} is not supported")
        attrs["output_padding"] = tuple(a.get("output_padding", (0, 0)))
    elif pads[:2] != pads[2:]:
        x = im.add("pad", [x], {"pads": (0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3])}, f"{im.layer()}.pad")
        pads = [0, 0, 0, 0]
    attrs["padding"] = tuple(pads[:2])
    layer = im.layer(ins[1])
    params = [im.param(w, f"{layer}.weight", ins[1])]
    if len(ins) > 2 and ins[2]:
        params.append(im.param(im.need_const(2, "bias"), f"{layer}.bias", ins[2]))
    return im.add("conv_transpose2d" if transposed else "conv2d", [x, *params], attrs, layer)


@converter("Gemm")
def _gemm(im: Importer, a: dict, ins: list):
    if a.get("transA", 0):
        im.fail("Gemm with transA=1 is not supported")
    w = im.need_const(1, "weight B")
    w = (w if a.get("transB", 0) else w.T) * np.float32(a.get("alpha", 1.0))
    layer = im.layer(ins[1])
    params = [im.param(w, f"{layer}.weight", ins[1])]
    if len(ins) > 2 and ins[2]:
        c = im.need_const(2, "bias C") * np.float32(a.get("beta", 1.0))
        params.append(im.param(np.broadcast_to(c, (w.shape[0],)).copy(), f"{layer}.bias", ins[2]))
    return im.add("linear", [im.tensor(ins[0]), *params], None, layer)


@converter("MatMul")
def _matmul(im: Importer, a: dict, ins: list):
    w = im.const(ins[1])
    if w is not None and w.ndim == 2:
        layer = im.layer(ins[1])
        return im.add("linear", [im.tensor(ins[0]), im.param(w.T, f"{layer}.weight", ins[1])], None, layer)
    return im.add("matmul", [im.tensor(ins[0]), im.tensor(ins[1])])


@converter("BatchNormalization")
def _batch_norm(im: Importer, a: dict, ins: list):
    if len(im.node.output) > 1 and any(im.node.output[1:]):
        im.fail("training-mode BatchNormalization is not supported", "export the model in eval() mode")
    layer = im.layer(ins[1])
    kinds = (("weight", WEIGHT), ("bias", WEIGHT), ("running_mean", BUFFER), ("running_var", BUFFER))
    params = [im.param(im.need_const(i + 1, k), f"{layer}.{k}", ins[i + 1], kind) for i, (k, kind) in enumerate(kinds)]
    return im.add("batch_norm", [im.tensor(ins[0]), *params], {"eps": a.get("epsilon", 1e-5)}, layer)


@converter("LayerNormalization")
def _layer_norm(im: Importer, a: dict, ins: list):
    x = im.tensor(ins[0])
    rank = len(im.shape(x))
    if a.get("axis", -1) % rank != rank - 1:
        im.fail("LayerNormalization is supported over the last axis only")
    layer = im.layer(ins[1])
    scale = im.param(im.need_const(1, "scale"), f"{layer}.weight", ins[1])
    c = im.shape(x)[-1]
    bias_value = im.const(ins[2]) if len(ins) > 2 and ins[2] else np.zeros(c, np.float32)
    if bias_value is None:
        im.fail("its bias must be a constant")
    bias = im.param(bias_value, f"{layer}.bias", ins[2] if len(ins) > 2 else "")
    return im.add("layer_norm", [x, scale, bias], {"eps": a.get("epsilon", 1e-5)}, layer)

"""ONNX emission: one ONNX node (or a short fixed sequence) per IR op.

Two flavours: ``onnx`` uses only standard ops (a ``fused_conv`` becomes
Conv + Add + activation), ``onnx-ort`` emits ONNX Runtime's contrib op
``com.microsoft.FusedConv``, whose fourth input Z is added before the
activation. Parameters become initializers under their IR names, the symbolic
batch a named dim "N". Opset and IR version are pinned so that onnxruntime-gpu
1.31 (which rejects IR version > 13) and onnxruntime 1.32 both load the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
from resdsl.backends.options import OnnxOptions

from resdsl import registry
from resdsl.atomic import atomic_path
from resdsl.errors import ResdslError
from resdsl.ir import Graph, Node
from resdsl.ops.cast import numpy_dtype
from resdsl.shapes import pair

OPSET = 20  # Gelu needs 20
IR_VERSION = 9  # the IR version that goes with opset 20
ORT_DOMAIN = "com.microsoft"


class _Emitter:
    """Accumulates nodes and initializers; ``out`` is the tensor name of an IR node."""

    def __init__(self, graph: Graph, flavour: str) -> None:
        import onnx

        self.onnx = onnx
        self.helper = onnx.helper
        self.graph = graph
        self.flavour = flavour
        self.nodes: list = []
        self.initializers: list = []
        self.names: dict[int, str] = {}
        self.uses_ort = False

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, domain: str | None = None, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=name, domain=domain, **attrs))
        return output


def _conv_attrs(node: Node, weight_shape) -> dict:
    ph, pw = list(pair(node.attrs["padding"]))
    return {
        "kernel_shape": list(weight_shape[2:]),
        "strides": list(pair(node.attrs["stride"])),
        "pads": [ph, pw, ph, pw],
        "dilations": list(pair(node.attrs["dilation"])),
        "group": int(node.attrs["groups"]),
    }


def _activation(e: _Emitter, x: str, activation: str, out: str, name: str) -> str:
    if activation == "none":
        return e.node("Identity", [x], out, name)
    return e.node({"relu": "Relu", "sigmoid": "Sigmoid"}[activation], [x], out, name)


def _fused_conv(e: _Emitter, n: Node, ins: list[str]) -> str:
    attrs = _conv_attrs(n, e.graph.node(e.graph.args(n.id)[1]).shape)
    act = n.attrs["activation"]
    if e.flavour == "onnx-ort" and act != "none" and fused_conv_runs(n.dtype):
        e.uses_ort = True
        kind = {"relu": "Relu", "sigmoid": "Sigmoid"}[act]
        return e.node("FusedConv", ins, n.name, n.name, domain=ORT_DOMAIN, activation=kind, **attrs)
    y = e.node("Conv", ins[:3], f"{n.name}/conv", f"{n.name}/conv", **attrs)
    if len(ins) > 3:
        y = e.node("Add", [y, ins[3]], f"{n.name}/add", f"{n.name}/add")
    return _activation(e, y, act, n.name, f"{n.name}/{act}")


def fused_conv_runs(dtype: str) -> bool:
    """ONNX Runtime's ``com.microsoft.FusedConv`` has a float32 CPU kernel only (onnxruntime#12045):
    for float16/bfloat16 the flavour emits plain Conv + Add + activation, which ORT fuses where it can."""
    return dtype == "float32"


def elem_type(dtype: str) -> int:
    """The ONNX TensorProto element type of a resdsl dtype."""
    import onnx

    return onnx.helper.np_dtype_to_tensor_dtype(numpy_dtype(dtype))


def _cast(e: _Emitter, n: Node, ins: list[str]) -> str:
    return e.node("Cast", ins, n.name, n.name, to=elem_type(n.attrs["dtype"]))


def _linear(e: _Emitter, n: Node, ins: list[str]) -> str:
    if len(n.shape) == 2:
        return e.node("Gemm", ins, n.name, n.name, transB=1)
    wt = e.node("Transpose", [ins[1]], f"{n.name}/weight_t", f"{n.name}/weight_t", perm=[1, 0])
    y = e.node("MatMul", [ins[0], wt], f"{n.name}/matmul" if len(ins) > 2 else n.name, f"{n.name}/matmul")
    return e.node("Add", [y, ins[2]], n.name, n.name) if len(ins) > 2 else y


def _pool(kind: str) -> Callable:
    def lower(e: _Emitter, n: Node, ins: list[str]) -> str:
        k = list(pair(n.attrs["kernel"]))
        ph, pw = list(pair(n.attrs["padding"]))
        extra = {"count_include_pad": 1} if kind == "AveragePool" else {}
        return e.node(
            kind,
            ins,
            n.name,
            n.name,
            kernel_shape=k,
            strides=list(pair(n.attrs["stride"] or n.attrs["kernel"])),
            pads=[ph, pw, ph, pw],
            **extra,
        )

    return lower


def _simple(op: str, **fixed) -> Callable:
    return lambda e, n, ins: e.node(op, ins, n.name, n.name, **fixed)


def _flatten(e: _Emitter, n: Node, ins: list[str]) -> str:
    axis = n.attrs["axis"]
    if axis == 1:
        return e.node("Flatten", ins, n.name, n.name, axis=1)
    shape = e.const(f"{n.name}/shape", np.array([0] * axis + [-1], np.int64))
    return e.node("Reshape", [ins[0], shape], n.name, n.name)


def _reshape(e: _Emitter, n: Node, ins: list[str]) -> str:
    shape = e.const(f"{n.name}/shape", np.array(n.attrs["shape"], np.int64))
    return e.node("Reshape", [ins[0], shape], n.name, n.name)


def _pad(e: _Emitter, n: Node, ins: list[str]) -> str:
    pads = e.const(f"{n.name}/pads", np.array(n.attrs["pads"], np.int64))
    return e.node("Pad", [ins[0], pads], n.name, n.name, mode="constant")


def _silu(e: _Emitter, n: Node, ins: list[str]) -> str:
    s = e.node("Sigmoid", ins, f"{n.name}/sigmoid", f"{n.name}/sigmoid")
    return e.node("Mul", [ins[0], s], n.name, n.name)


LOWERING: dict[str, Callable[[_Emitter, Node, list[str]], str]] = {
    "conv2d": lambda e, n, ins: e.node(
        "Conv", ins, n.name, n.name, **_conv_attrs(n, e.graph.node(e.graph.args(n.id)[1]).shape)
    ),
    "fused_conv": _fused_conv,
    "batch_norm": lambda e, n, ins: e.node("BatchNormalization", ins, n.name, n.name, epsilon=float(n.attrs["eps"])),
    "layer_norm": lambda e, n, ins: e.node(
        "LayerNormalization", ins, n.name, n.name, axis=-1, epsilon=float(n.attrs["eps"])
    ),
    "relu": _simple("Relu"),
    "sigmoid": _simple("Sigmoid"),
    "silu": _silu,
    "gelu": _simple("Gelu", approximate="none"),
    "identity": _simple("Identity"),
    "softmax": lambda e, n, ins: e.node("Softmax", ins, n.name, n.name, axis=int(n.attrs["axis"])),
    "max_pool2d": _pool("MaxPool"),
    "avg_pool2d": _pool("AveragePool"),
    "global_avg_pool": _simple("GlobalAveragePool"),
    "flatten": _flatten,
    "linear": _linear,
    "matmul": _simple("MatMul"),
    "add": _simple("Add"),
    "sub": _simple("Sub"),
    "mul": _simple("Mul"),
    "sum": _simple("Sum"),
    "concat": lambda e, n, ins: e.node("Concat", ins, n.name, n.name, axis=int(n.attrs["axis"])),
    "reshape": _reshape,
    "transpose": lambda e, n, ins: e.node("Transpose", ins, n.name, n.name, perm=list(n.attrs["perm"])),
    "pad": _pad,
    "cast": _cast,
}

registry.register_backend("onnx", LOWERING)
registry.register_backend("onnx-ort", LOWERING)  # the same table; fused_conv differs inside


def _value_info(helper, name: str, shape, dtype: str = "float32") -> object:
    dims = [d if isinstance(d, int) else str(d) for d in shape]
    return helper.make_tensor_value_info(name, elem_type(dtype), dims)


def to_onnx(graph: Graph, flavour: str = "onnx", provenance: dict | None = None):
    """Build the ModelProto for ``graph``; ``flavour`` is "onnx" or "onnx-ort"."""
    if flavour not in ("onnx", "onnx-ort"):
        raise ResdslError(f"unknown ONNX flavour {flavour!r}")
    e = _Emitter(graph, flavour)
    helper = e.helper
    inputs = []
    emitted_params: set[str] = set()
    for nid in graph.topo_order():
        n = graph.node(nid)
        if n.op == "input":
            e.names[nid] = n.attrs["name"]
            inputs.append(_value_info(helper, n.attrs["name"], n.shape, n.dtype))
            continue
        if n.op == "param":
            pname = n.attrs["name"]
            if pname not in emitted_params:
                e.const(pname, graph.parameters[pname])
                emitted_params.add(pname)
            e.names[nid] = pname
            continue
        if n.op not in LOWERING:
            raise ResdslError(f"{n.name}: the ONNX backend has no lowering for op {n.op!r}", n.loc)
        e.names[nid] = LOWERING[n.op](e, n, [e.names[a] for a in graph.args(nid)])
    outputs = []
    for out_name, nid in graph.outputs:
        if e.names[nid] != out_name:
            e.node("Identity", [e.names[nid]], out_name, f"output/{out_name}")
        outputs.append(_value_info(helper, out_name, graph.node(nid).shape, graph.node(nid).dtype))
    body = helper.make_graph(e.nodes, graph.name, inputs, outputs, e.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if e.uses_ort:
        opsets.append(helper.make_opsetid(ORT_DOMAIN, 1))
    model = helper.make_model(body, opset_imports=opsets, producer_name="resdsl", ir_version=IR_VERSION)
    from resdsl.version import __version__

    model.producer_version = __version__
    meta = {"resdsl.flavour": flavour, **_dtype_meta(graph)}
    if provenance:
        meta["resdsl.provenance"] = json.dumps(provenance, sort_keys=True, default=str)
    helper.set_model_props(model, meta)
    return model


def _dtype_meta(graph: Graph) -> dict[str, str]:
    """``resdsl.dtype`` (and the float32 policy) for a converted graph: what ``run --check`` compares in."""
    info = graph.meta.get("dtype")
    return {"resdsl.dtype": info["dtype"], "resdsl.keep_float32": info["keep_float32"]} if info else {}


def check(model) -> None:
    """onnx's full checker; contrib-op models are checked without the standard-only shape inference."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ResdslError(f"emitted ONNX is invalid: {str(err).splitlines()[0]}") from err


def emit(graph: Graph, out_path: str, options: OnnxOptions) -> list[str]:
    if not out_path.endswith(".onnx"):
        raise ResdslError(f"output {out_path!r} must end in .onnx for target {options.target}")
    model = to_onnx(graph, options.target, options.provenance)
    check(model)
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:
            f.write(model.SerializeToString(deterministic=True))
    return [out_path]

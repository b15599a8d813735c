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
from dataclasses import replace

import numpy as np
from resdsl.backends import index_bounds
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


def _activation(e: _Emitter, n: Node, x: str, activation: str, out: str) -> str:
    """A fused activation by this backend's own lowering of the op of that name."""
    if activation == "none":
        return e.node("Identity", [x], out, f"{n.name}/none")
    return LOWERING[activation](e, replace(n, op=activation, attrs={}, name=out), [x])


# ONNX Runtime's FusedConv names its activations itself (an attribute of the contrib op).
_ORT_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid"}


def _fused_conv(e: _Emitter, n: Node, ins: list[str]) -> str:
    attrs = _conv_attrs(n, e.graph.node(e.graph.args(n.id)[1]).shape)
    act = n.attrs["activation"]
    if e.flavour == "onnx-ort" and act != "none" and fused_conv_runs(n.dtype):
        e.uses_ort = True
        return e.node("FusedConv", ins, n.name, n.name, domain=ORT_DOMAIN, activation=_ORT_ACTIVATIONS[act], **attrs)
    y = e.node("Conv", ins[:3], f"{n.name}/conv", f"{n.name}/conv", **attrs)
    if len(ins) > 3:
        y = e.node("Add", [y, ins[3]], f"{n.name}/add", f"{n.name}/add")
    return _activation(e, n, y, act, n.name)


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
        a = n.attrs
        ph, pw = list(pair(a["padding"]))
        # ONNX Runtime's ceil-mode divisor is PyTorch's (the overhang is never counted): checked
        # with padding against the reference.
        extra = {"count_include_pad": int(bool(a.get("count_include_pad", True)))} if kind == "AveragePool" else {}
        kernel, stride = list(pair(a["kernel"])), list(pair(a["stride"] or a["kernel"]))
        ceil = bool(a.get("ceil_mode", False))
        # In ceil mode PyTorch drops a last window that would start inside the right padding;
        # ONNX keeps it: pool, then cut back to the IR's (PyTorch's) size.
        x_hw = e.graph.node(e.graph.args(n.id)[0]).shape[2:]
        onnx_hw = [-(-(d + 2 * p - k) // s) + 1 for d, p, k, s in zip(x_hw, (ph, pw), kernel, stride)]
        trim = ceil and list(n.shape[2:]) != onnx_hw
        out = e.node(
            kind,
            ins,
            f"{n.name}/untrimmed" if trim else n.name,
            n.name,
            kernel_shape=kernel,
            strides=stride,
            pads=[ph, pw, ph, pw],
            ceil_mode=int(ceil),
            **extra,
        )
        if not trim:
            return out
        consts = [
            e.const(f"{n.name}/{k}", np.array(v, np.int64))
            for k, v in (("starts", [0, 0]), ("ends", list(n.shape[2:])), ("axes", [2, 3]))
        ]
        return e.node("Slice", [out, *consts], n.name, f"{n.name}/trim")

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


def _f32(e: _Emitter, name: str, value: float) -> str:
    return e.const(name, np.array(value, np.float32))


def _clip(e: _Emitter, n: Node, ins: list[str]) -> str:
    lo = _f32(e, f"{n.name}/min", n.attrs["min"])
    hi = _f32(e, f"{n.name}/max", n.attrs["max"])
    return e.node("Clip", [ins[0], lo, hi], n.name, n.name)


def _reduce(op: str) -> Callable:
    """ReduceMean/Sum/Max with the axes as an input (opset 18)."""

    def lower(e: _Emitter, n: Node, ins: list[str]) -> str:
        axes = e.const(f"{n.name}/axes", np.array(n.attrs["axes"], np.int64))
        return e.node(op, [ins[0], axes], n.name, n.name, keepdims=int(bool(n.attrs["keepdim"])))

    return lower


def _resize(e: _Emitter, n: Node, ins: list[str]) -> str:
    """Resize of axes 2 and 3 only (opset 18 ``axes``), so the symbolic batch needs no size."""
    a = n.attrs
    sizes = e.const(f"{n.name}/sizes", np.array(a["size"], np.int64))
    if a["mode"] == "nearest":
        modes = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        ctm = "align_corners" if a["align_corners"] else "half_pixel"
        modes = {"mode": "linear", "coordinate_transformation_mode": ctm}
    return e.node("Resize", [ins[0], "", "", sizes], n.name, n.name, axes=[2, 3], **modes)


def _conv_transpose(e: _Emitter, n: Node, ins: list[str]) -> str:
    a = n.attrs
    ph, pw = list(pair(a["padding"]))
    w = e.graph.node(e.graph.args(n.id)[1]).shape
    return e.node(
        "ConvTranspose",
        ins,
        n.name,
        n.name,
        kernel_shape=list(w[2:]),
        strides=list(pair(a["stride"])),
        pads=[ph, pw, ph, pw],
        dilations=list(pair(a["dilation"])),
        output_padding=list(pair(a["output_padding"])),
        group=int(a["groups"]),
    )


def _per_channel(e: _Emitter, n: Node, v: str, rank: int, what: str) -> str:
    """A (C,) vector reshaped to broadcast over axis 1 (ONNX Runtime folds it: it is constant)."""
    shape = e.const(f"{n.name}/{what}_shape", np.array([1, -1] + [1] * (rank - 2), np.int64))
    return e.node("Reshape", [v, shape], f"{n.name}/{what}_c", f"{n.name}/{what}_c")


def _normalise(e: _Emitter, n: Node, x: str, axes: list[int], eps: float) -> str:
    """(x - mean) / sqrt(var + eps) over ``axes``, with explicit ReduceMean maths."""
    name = n.name
    ax = e.const(f"{name}/norm_axes", np.array(axes, np.int64))
    mu = e.node("ReduceMean", [x, ax], f"{name}/mean", f"{name}/mean", keepdims=1)
    d = e.node("Sub", [x, mu], f"{name}/centred", f"{name}/centred")
    sq = e.node("Mul", [d, d], f"{name}/square", f"{name}/square")
    var = e.node("ReduceMean", [sq, ax], f"{name}/var", f"{name}/var", keepdims=1)
    std = e.node(
        "Sqrt",
        [e.node("Add", [var, _f32(e, f"{name}/eps", eps)], f"{name}/var_eps", f"{name}/var_eps")],
        f"{name}/std",
        f"{name}/std",
    )
    return e.node("Div", [d, std], f"{name}/normed", f"{name}/normed")


def _affine(e: _Emitter, n: Node, y: str, scale: str, bias: str, rank: int) -> str:
    y = e.node("Mul", [y, _per_channel(e, n, scale, rank, "scale")], f"{n.name}/scaled", f"{n.name}/scaled")
    return e.node("Add", [y, _per_channel(e, n, bias, rank, "bias")], n.name, n.name)


def _layer_norm(e: _Emitter, n: Node, ins: list[str]) -> str:
    """The last axis: LayerNormalization. The channels (ConvNeXt): the same maths over axis 1,
    no transposes."""
    eps = float(n.attrs["eps"])
    if n.attrs.get("axis", -1) == -1:
        return e.node("LayerNormalization", ins, n.name, n.name, axis=-1, epsilon=eps)
    return _affine(e, n, _normalise(e, n, ins[0], [1], eps), ins[1], ins[2], len(n.shape))


def _group_norm(e: _Emitter, n: Node, ins: list[str]) -> str:
    """(N, C, ...) -> (N, G, C/G * ...), normalised over the last axis, reshaped back, then the
    per-channel affine. Why not GroupNormalization: opset 18-20 give it a per-group scale."""
    x, rank = ins[0], len(n.shape)
    grouped = e.const(f"{n.name}/grouped_shape", np.array([0, int(n.attrs["num_groups"]), -1], np.int64))
    g = e.node("Reshape", [x, grouped], f"{n.name}/grouped", f"{n.name}/grouped")
    y = _normalise(e, n, g, [2], float(n.attrs["eps"]))
    shape = e.node("Shape", [x], f"{n.name}/shape", f"{n.name}/shape")
    y = e.node("Reshape", [y, shape], f"{n.name}/ungrouped", f"{n.name}/ungrouped")
    return _affine(e, n, y, ins[1], ins[2], rank)


def _slice(e: _Emitter, n: Node, ins: list[str]) -> str:
    a = n.attrs
    consts = [
        e.const(f"{n.name}/{k}", np.array([a[v]], np.int64))
        for k, v in (("starts", "start"), ("ends", "end"), ("axes", "axis"), ("steps", "step"))
    ]
    return e.node("Slice", [ins[0], *consts], n.name, n.name)


def _pow(e: _Emitter, n: Node, ins: list[str]) -> str:
    """x * x for a square (exact, as the reference); Pow otherwise."""
    if n.attrs["exponent"] == 2.0:
        return e.node("Mul", [ins[0], ins[0]], n.name, n.name)
    return e.node("Pow", [ins[0], _f32(e, f"{n.name}/exponent", n.attrs["exponent"])], n.name, n.name)


def _qparams(e: _Emitter, n: Node, dtype: str) -> tuple[str, str, dict]:
    """Scale and zero point initializers of a quantize/dequantize node, and its axis attribute."""
    scale, zp = np.asarray(n.attrs["scale"], np.float32), np.asarray(n.attrs["zero_point"], dtype)
    axis = {}
    if scale.ndim or zp.ndim:  # per channel: ONNX wants both as vectors of the channel count
        size = max(scale.size, zp.size)
        scale, zp = np.broadcast_to(scale, (size,)).copy(), np.broadcast_to(zp, (size,)).copy()
        axis = {"axis": int(n.attrs["axis"])}
    e.const(f"{n.name}/scale", scale)
    e.const(f"{n.name}/zero_point", zp)
    return f"{n.name}/scale", f"{n.name}/zero_point", axis


def _quantize(e: _Emitter, n: Node, ins: list[str]) -> str:
    if n.dtype not in ("int8", "uint8"):
        raise ResdslError(f"{n.name}: ONNX opset {OPSET} quantizes to int8 or uint8, not {n.dtype}", n.loc)
    scale, zp, axis = _qparams(e, n, n.dtype)
    return e.node("QuantizeLinear", [ins[0], scale, zp], n.name, n.name, **axis)


def _dequantize(e: _Emitter, n: Node, ins: list[str]) -> str:
    scale, zp, axis = _qparams(e, n, e.graph.node(e.graph.args(n.id)[0]).dtype)
    return e.node("DequantizeLinear", [ins[0], scale, zp], n.name, n.name, **axis)


LOWERING: dict[str, Callable[[_Emitter, Node, list[str]], str]] = {
    "conv2d": lambda e, n, ins: e.node(
        "Conv", ins, n.name, n.name, **_conv_attrs(n, e.graph.node(e.graph.args(n.id)[1]).shape)
    ),
    "fused_conv": _fused_conv,
    "batch_norm": lambda e, n, ins: e.node("BatchNormalization", ins, n.name, n.name, epsilon=float(n.attrs["eps"])),
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
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
    "clip": _clip,
    "hardsigmoid": _simple("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
    "hardswish": _simple("HardSwish"),
    "tanh": _simple("Tanh"),
    "leaky_relu": lambda e, n, ins: e.node("LeakyRelu", ins, n.name, n.name, alpha=float(n.attrs["negative_slope"])),
    "elu": lambda e, n, ins: e.node("Elu", ins, n.name, n.name, alpha=float(n.attrs["alpha"])),
    "dropout": _simple("Identity"),
    "stochastic_depth": _simple("Identity"),
    "reduce_mean": _reduce("ReduceMean"),
    "reduce_sum": _reduce("ReduceSum"),
    "reduce_max": _reduce("ReduceMax"),
    "resize": _resize,
    "conv_transpose2d": _conv_transpose,
    "embedding": lambda e, n, ins: e.node("Gather", [ins[1], ins[0]], n.name, n.name, axis=0),
    "slice": _slice,
    "div": _simple("Div"),
    "pow": _pow,
    "quantize": _quantize,
    "dequantize": _dequantize,
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
    bounds = index_bounds(graph)
    if bounds:
        meta["resdsl.index_bounds"] = json.dumps(bounds, sort_keys=True)
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

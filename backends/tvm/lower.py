"""Lower an optimised resdsl Graph straight into a Relax IRModule (no ONNX round trip).

One function ``main`` holds one dataflow block: graph inputs become the function's
parameters, and every compute node becomes one or a few Relax bindings, chosen by
``LOWERINGS`` (keyed by the op names of ``resdsl.registry.OPS``; a test checks that
every registered op has an entry: ``registry.missing_lowerings("tvm")``).

Parameters are bound as constants (``relax.const``), not passed as function
arguments. Why: the artifact is one self-contained ``.so`` a user can run with
nothing beside it but its sidecar, and constants let Relax's ``FoldConstant``
precompute what depends on weights alone (batch-norm scales, bias reshapes). The
VM copies the constant pool to the device once, when it is created.

The symbolic batch ``"N"`` stays symbolic: one ``tvm.tirx.Var('N', 'int64')`` is
shared by every input and intermediate shape, so one module serves every batch
size; ``batch=`` replaces it by a number. Output shapes come from the IR (each
node's ``shape``), so reshape and flatten never re-derive what the IR decided.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from resdsl import registry
from resdsl.errors import ResdslError
from resdsl.ir import Graph, Node
from resdsl.shapes import BATCH, pair

from . import quant
from .errors import tvm_error_line

# A lowering gets the context, the node and the Relax values of its inputs, and
# returns the Relax expression of its result (emitted by ``lower``).
Lowering = Callable[["Lowerer", Node, list], object]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*ops: str) -> Callable[[Lowering], Lowering]:
    def wrap(fn: Lowering) -> Lowering:
        for op in ops:
            LOWERINGS[op] = fn
        return fn

    return wrap


class Lowerer:
    """The state of one lowering: the block builder, the batch variable, the emitted values."""

    def __init__(self, graph: Graph, batch: int | None, int8: bool = False) -> None:
        import tvm
        from tvm import relax

        self.tvm = tvm
        self.relax = relax
        self.op = relax.op
        self.graph = graph
        self.bb = relax.BlockBuilder()
        self.batch = tvm.tirx.Var(BATCH, "int64") if batch is None else batch
        self.int8 = int8  # integer convolutions (``quant.int8_conv``): the target has VNNI
        self.values: dict[int, object] = {}  # node id -> its Relax value, as emitted so far
        # node id -> (quantized value, (scale, zero point, dtype)) of a value that is exactly that
        # quantized value dequantized (``quant``: a quantize on the same grid is the identity)
        self.on_grid: dict[int, tuple] = {}
        # node id of an integer conv -> (its float32 accumulator, the per-channel scale s_x s_w)
        self.accumulators: dict[int, tuple] = {}

    def dims(self, shape: tuple) -> list:
        """An IR shape with the batch symbol replaced by the Relax batch (a variable or a number)."""
        return [self.batch if d == BATCH else int(d) for d in shape]

    def emit(self, expr, node: Node):
        """Bind an intermediate: Relax operators take bound (normalised) values, not nested calls."""
        return self.bb.emit(expr, name_hint=_ident(node.name))

    def const(self, value):
        """A constant in its array's dtype: float32, float16/bfloat16 after ``convert_dtype``, or the
        integer dtype of a quantized parameter (int8, uint8, int32)."""
        import numpy as np

        value = np.ascontiguousarray(value)
        if value.dtype == np.float64:
            value = value.astype(np.float32)
        return self.relax.const(value, str(value.dtype))

    def channel(self, v, rank: int, node: Node):
        """Reshape a per-channel vector (C,) to broadcast over axis 1 of a rank-``rank`` tensor."""
        return self.emit(self.op.reshape(v, [1, -1] + [1] * (rank - 2)), node)

    def scalar(self, value: float):
        return self.relax.const(float(value), "float32")

    def activate(self, y, node: Node, activation: str):
        """A fused activation by this backend's own lowering of the op of that name."""
        return LOWERINGS[activation](self, replace(node, op=activation, attrs={}), [y])


def _ident(name: str) -> str:
    """Relax value names: the node's name with dots and other punctuation as underscores."""
    text = re.sub(r"\W", "_", name)
    return text if text and not text[0].isdigit() else "v_" + text


# ---------------------------------------------------------------- convolution


def _conv(cx: Lowerer, node: Node, x, w, b):
    a = node.attrs
    ph, pw = pair(a["padding"])
    acc = accumulator_dtype(node.dtype)
    y = cx.op.nn.conv2d(
        x,
        w,
        strides=pair(a["stride"]),
        padding=(ph, pw, ph, pw),
        dilation=pair(a["dilation"]),
        groups=int(a["groups"]),
        out_dtype=acc,
    )
    if b is not None:
        y = cx.emit(y, node)
        y = cx.op.add(y, cx.channel(_widened(cx, b, acc, node), 4, node))
    return _rounded(cx, y, node)


# ---------------------------------------------------------------- reduced precision


def accumulator_dtype(dtype: str) -> str:
    """Products of float16/bfloat16 accumulate in float32 and round once, as the interpreter does
    (``resdsl.ops.cast``): the kernels see float32 accumulators fed by widened loads."""
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def _widened(cx: Lowerer, v, acc: str, node: Node):
    """A bias (in the node's dtype: the verifier makes float inputs agree) in the accumulator dtype;
    a constant one is widened at compile time (FoldConstant)."""
    return v if node.dtype == acc else cx.emit(cx.op.astype(v, acc), node)


def _rounded(cx: Lowerer, y, node: Node):
    """An accumulator rounded to the node's dtype: the one rounding of a reduced-precision product."""
    if node.dtype == accumulator_dtype(node.dtype):
        return y
    return cx.op.astype(cx.emit(y, node), node.dtype)


@lowering("cast")
def _cast(cx: Lowerer, node: Node, args: list):
    return cx.op.astype(args[0], node.attrs["dtype"])


@lowering("conv2d")
def _conv2d(cx: Lowerer, node: Node, args: list):
    y = quant.int8_conv(cx, node)
    return y if y is not None else _conv(cx, node, args[0], args[1], args[2] if len(args) > 2 else None)


@lowering("fused_conv")
def _fused_conv(cx: Lowerer, node: Node, args: list):
    y = quant.int8_conv(cx, node)
    if y is None:
        y = _conv(cx, node, args[0], args[1], args[2])
    if len(args) > 3:
        y = cx.op.add(cx.emit(y, node), args[3])
    if node.attrs["activation"] != "none":
        y = cx.activate(cx.emit(y, node), node, node.attrs["activation"])
    return y


# ---------------------------------------------------------------- normalisation


@lowering("batch_norm")
def _batch_norm(cx: Lowerer, node: Node, args: list):
    """(x - mean) * (scale / sqrt(var + eps)) + bias; with constant statistics FoldConstant
    reduces the right-hand factors to two per-channel vectors."""
    x, scale, bias, mean, var = args
    op, rank = cx.op, len(node.shape)
    eps = cx.relax.const(float(node.attrs["eps"]), node.dtype)
    std = cx.emit(op.sqrt(cx.emit(op.add(var, eps), node)), node)
    inv = cx.channel(cx.emit(op.divide(scale, std), node), rank, node)
    y = cx.emit(op.subtract(x, cx.channel(mean, rank, node)), node)
    y = cx.emit(op.multiply(y, inv), node)
    return op.add(y, cx.channel(bias, rank, node))


@lowering("layer_norm")
def _layer_norm(cx: Lowerer, node: Node, args: list):
    x, scale, bias = args
    axis = int(node.attrs.get("axis", -1))
    return cx.op.nn.layer_norm(x, scale, bias, axes=[axis], epsilon=float(node.attrs["eps"]))


@lowering("group_norm")
def _group_norm(cx: Lowerer, node: Node, args: list):
    x, scale, bias = args
    return cx.op.nn.group_norm(
        x,
        scale,
        bias,
        num_groups=int(node.attrs["num_groups"]),
        channel_axis=1,
        axes=list(range(2, len(node.shape))),
        epsilon=float(node.attrs["eps"]),
    )


# ---------------------------------------------------------------- activations


@lowering("relu")
def _relu(cx: Lowerer, node: Node, args: list):
    return cx.op.nn.relu(args[0])


@lowering("sigmoid")
def _sigmoid(cx: Lowerer, node: Node, args: list):
    return cx.op.sigmoid(args[0])


@lowering("silu")
def _silu(cx: Lowerer, node: Node, args: list):
    return cx.op.nn.silu(args[0])


@lowering("gelu")
def _gelu(cx: Lowerer, node: Node, args: list):
    """Relax's ``gelu`` is the exact erf form (``gelu_tanh`` is the approximation)."""
    return cx.op.nn.gelu(args[0])


@lowering("softmax")
def _softmax(cx: Lowerer, node: Node, args: list):
    return cx.op.nn.softmax(args[0], axis=int(node.attrs["axis"]))


@lowering("clip")
def _clip(cx: Lowerer, node: Node, args: list):
    return cx.op.clip(args[0], float(node.attrs["min"]), float(node.attrs["max"]))


@lowering("hardsigmoid")
def _hardsigmoid(cx: Lowerer, node: Node, args: list):
    """clip(x + 3, 0, 6) / 6: elementwise, one fused kernel."""
    y = cx.emit(cx.op.add(args[0], cx.scalar(3.0)), node)
    y = cx.emit(cx.op.clip(y, 0.0, 6.0), node)
    return cx.op.divide(y, cx.scalar(6.0))


@lowering("hardswish")
def _hardswish(cx: Lowerer, node: Node, args: list):
    return cx.op.multiply(args[0], cx.emit(_hardsigmoid(cx, node, args), node))


@lowering("tanh")
def _tanh(cx: Lowerer, node: Node, args: list):
    return cx.op.tanh(args[0])


@lowering("leaky_relu")
def _leaky_relu(cx: Lowerer, node: Node, args: list):
    return cx.op.nn.leakyrelu(args[0], float(node.attrs["negative_slope"]))


@lowering("elu")
def _elu(cx: Lowerer, node: Node, args: list):
    """x where x > 0, else alpha * (exp(min(x, 0)) - 1): the min keeps exp from overflowing."""
    x, op = args[0], cx.op
    neg = cx.emit(op.exp(cx.emit(op.minimum(x, cx.scalar(0.0)), node)), node)
    neg = cx.emit(op.multiply(cx.emit(op.subtract(neg, cx.scalar(1.0)), node), cx.scalar(node.attrs["alpha"])), node)
    return op.where(cx.emit(op.greater(x, cx.scalar(0.0)), node), x, neg)


@lowering("identity", "dropout", "stochastic_depth")
def _identity(cx: Lowerer, node: Node, args: list):
    return args[0]


# ---------------------------------------------------------------- pooling


def _pool_attrs(node: Node) -> dict:
    a = node.attrs
    kernel = pair(a["kernel"])
    ph, pw = pair(a["padding"])
    return {
        "pool_size": kernel,
        "strides": pair(a["stride"] or a["kernel"]),
        "padding": (ph, pw, ph, pw),
        "ceil_mode": bool(a.get("ceil_mode", False)),
    }


@lowering("max_pool2d")
def _max_pool2d(cx: Lowerer, node: Node, args: list):
    pooled = quant.pooled_on_grid(cx, node, lambda q: cx.op.nn.max_pool2d(q, **_pool_attrs(node)))
    return pooled if pooled is not None else cx.op.nn.max_pool2d(args[0], **_pool_attrs(node))


@lowering("avg_pool2d")
def _avg_pool2d(cx: Lowerer, node: Node, args: list):
    return cx.op.nn.avg_pool2d(
        args[0], **_pool_attrs(node), count_include_pad=bool(node.attrs.get("count_include_pad", True))
    )


@lowering("global_avg_pool")
def _global_avg_pool(cx: Lowerer, node: Node, args: list):
    return cx.op.mean(args[0], axis=[2, 3], keepdims=True)


@lowering("reduce_mean", "reduce_sum", "reduce_max")
def _reduce(cx: Lowerer, node: Node, args: list):
    fn = {"reduce_mean": cx.op.mean, "reduce_sum": cx.op.sum, "reduce_max": cx.op.max}[node.op]
    return fn(args[0], axis=[int(a) for a in node.attrs["axes"]], keepdims=bool(node.attrs["keepdim"]))


# ---------------------------------------------------------------- resampling


@lowering("resize")
def _resize(cx: Lowerer, node: Node, args: list):
    """PyTorch's coordinate rules in resize2d's terms (see ``resdsl/ops/resample.py``)."""
    a = node.attrs
    if a["mode"] == "nearest":
        mode = {
            "method": "nearest_neighbor",
            "coordinate_transformation_mode": "asymmetric",
            "rounding_method": "floor",
        }
    else:
        ctm = "align_corners" if a["align_corners"] else "half_pixel"
        mode = {"method": "linear", "coordinate_transformation_mode": ctm}
    return cx.op.image.resize2d(args[0], [int(d) for d in a["size"]], layout="NCHW", **mode)


@lowering("conv_transpose2d")
def _conv_transpose2d(cx: Lowerer, node: Node, args: list):
    a = node.attrs
    ph, pw = pair(a["padding"])
    y = cx.op.nn.conv2d_transpose(
        args[0],
        args[1],
        strides=pair(a["stride"]),
        padding=(ph, pw, ph, pw),
        output_padding=pair(a["output_padding"]),
        dilation=pair(a["dilation"]),
        groups=int(a["groups"]),
    )
    if len(args) > 2:
        y = cx.op.add(cx.emit(y, node), cx.channel(args[2], 4, node))
    return y


# ---------------------------------------------------------------- dense


@lowering("linear")
def _linear(cx: Lowerer, node: Node, args: list):
    acc = accumulator_dtype(node.dtype)
    if acc == node.dtype:
        return cx.op.linear(args[0], args[1], args[2] if len(args) > 2 else None)
    wt = cx.emit(cx.op.permute_dims(args[1]), node)
    y = cx.op.matmul(args[0], wt, out_dtype=acc)
    if len(args) > 2:
        y = cx.op.add(cx.emit(y, node), _widened(cx, args[2], acc, node))
    return _rounded(cx, y, node)


@lowering("matmul")
def _matmul(cx: Lowerer, node: Node, args: list):
    return _rounded(cx, cx.op.matmul(args[0], args[1], out_dtype=accumulator_dtype(node.dtype)), node)


# ---------------------------------------------------------------- elementwise


@lowering("add")
def _add(cx: Lowerer, node: Node, args: list):
    return cx.op.add(args[0], args[1])


@lowering("sub")
def _sub(cx: Lowerer, node: Node, args: list):
    return cx.op.subtract(args[0], args[1])


@lowering("mul")
def _mul(cx: Lowerer, node: Node, args: list):
    return cx.op.multiply(args[0], args[1])


@lowering("sum")
def _sum(cx: Lowerer, node: Node, args: list):
    """Left to right, as the reference adds."""
    out = args[0]
    for i, x in enumerate(args[1:]):
        out = cx.op.add(out if i == 0 else cx.emit(out, node), x)
    return out


@lowering("div")
def _div(cx: Lowerer, node: Node, args: list):
    return cx.op.divide(args[0], args[1])


@lowering("pow")
def _pow(cx: Lowerer, node: Node, args: list):
    """Small whole exponents as products (exact for a square, no libm ``pow`` of a negative
    base); power otherwise."""
    e = node.attrs["exponent"]
    if e in (2.0, 3.0, 4.0):
        y = args[0]
        for _ in range(int(e) - 1):
            y = cx.op.multiply(y if y is args[0] else cx.emit(y, node), args[0])
        return y
    return cx.op.power(args[0], cx.scalar(e))


# ---------------------------------------------------------------- layout


@lowering("flatten", "reshape")
def _reshape(cx: Lowerer, node: Node, args: list):
    """The IR already resolved 0 and -1: reshape to the node's recorded shape."""
    return cx.op.reshape(args[0], cx.dims(node.shape))


@lowering("transpose")
def _transpose(cx: Lowerer, node: Node, args: list):
    return cx.op.permute_dims(args[0], [int(p) for p in node.attrs["perm"]])


@lowering("concat")
def _concat(cx: Lowerer, node: Node, args: list):
    return cx.op.concat(list(args), axis=int(node.attrs["axis"]))


@lowering("pad")
def _pad(cx: Lowerer, node: Node, args: list):
    """ONNX order (all begins, then all ends) to Relax's (begin, end) per axis."""
    pads = [int(p) for p in node.attrs["pads"]]
    r = len(pads) // 2
    width = [v for i in range(r) for v in (pads[i], pads[i + r])]
    return cx.op.nn.pad(args[0], width, pad_mode="constant", pad_value=0.0)


@lowering("slice")
def _slice(cx: Lowerer, node: Node, args: list):
    a = node.attrs
    return cx.op.strided_slice(
        args[0], axes=[int(a["axis"])], begin=[int(a["start"])], end=[int(a["end"])], strides=[int(a["step"])]
    )


@lowering("embedding")
def _embedding(cx: Lowerer, node: Node, args: list):
    return cx.op.take(args[1], args[0], axis=0)


# ---------------------------------------------------------------- the module


def _tensor_type(cx: Lowerer, node: Node):
    return cx.relax.TensorType(cx.dims(node.shape), node.dtype)


def lower(graph: Graph, batch: int | None = None, int8: bool = False):
    """Build ``main(inputs...) -> (outputs...)``: one dataflow block, parameters as constants.

    ``int8``: lower the convolutions of a quantized graph to integer ones (``quant.int8_conv``),
    for a target with VNNI (``target.has_vnni``); bindings they leave unused are removed.

    Returns the IRModule. Raises ResdslError naming the node's source line when an op
    has no lowering or Relax rejects what it was given.
    """
    missing = sorted({n.op for n in graph.compute_nodes()} - set(LOWERINGS))
    if missing:
        node = next(n for n in graph.compute_nodes() if n.op in missing)
        raise ResdslError(f"the TVM backend cannot lower {', '.join(missing)}", node.loc, "use the onnx target")
    cx = Lowerer(graph, batch, int8)
    relax = cx.relax
    params = [
        relax.Var(_ident(graph.node(nid).attrs["name"]), _tensor_type(cx, graph.node(nid))) for nid in graph.inputs
    ]
    values = cx.values
    values.update(zip(graph.inputs, params))
    with cx.bb.function("main", params):
        with cx.bb.dataflow():
            for nid in graph.topo_order():
                node = graph.node(nid)
                if node.op == "input":
                    continue
                if node.op == "param":
                    values[nid] = cx.const(graph.parameters[node.attrs["name"]])
                    continue
                args = [values[a] for a in graph.args(nid)]
                try:
                    expr = LOWERINGS[node.op](cx, node, args)
                    # an input or an earlier value itself (a same-grid quantize): no alias binding,
                    # which ConvertLayout would pin to NCHW with a transpose
                    known = any(expr is a for a in args) or isinstance(expr, relax.Var)
                    values[nid] = expr if known else cx.emit(expr, node)
                except ResdslError:
                    raise
                except Exception as e:  # Relax's own type checks: name the node, not the C++ frame
                    raise ResdslError(
                        f"{node.name}: Relax rejected {node.op}: {tvm_error_line(e)}", node.loc, "report this as a bug"
                    ) from e
            outs = [values[nid] for _, nid in graph.outputs]
            result = cx.bb.emit_output(relax.Tuple(outs))
        cx.bb.emit_func_output(result)
    mod = cx.bb.get()
    return relax.transform.DeadCodeElimination()(mod) if int8 else mod


LOWERINGS["quantize"], LOWERINGS["dequantize"] = quant.quantize, quant.dequantize
registry.register_backend("tvm", LOWERINGS)

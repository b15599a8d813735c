"""Relax lowerings of ``quantize`` and ``dequantize``, and the integer convolution of an int8 graph.

**QDQ as elementwise arithmetic.** A per-tensor ``quantize`` is ``clip(round(x / scale) +
zero_point)`` cast to its dtype, and ``dequantize`` is ``(q - zero_point) * scale``, written
with Relax's elementwise ops rather than ``relax.quantize``/``relax.dequantize``. Why: the
elementwise ops follow ``ConvertLayout``'s NHWC layout, while the QDQ ops have no layout rule,
so every one of them sat between two transposes back to NCHW (resnet18's int8 module had a
transpose pair around each conv). The arithmetic is the same (division in float32, round half
to even, saturation), as ONNX and the interpreter define it. Per-channel activations (which
resdsl's quantizer never writes, but an imported model may) keep Relax's ops.

**Integer convolutions** (``int8_conv``): a conv2d or fused_conv whose input is a dequantized
uint8 activation (per tensor) and whose weight is a dequantized int8 parameter (symmetric, per
output channel) is lowered as the integer convolution it stands for::

    acc[n, o, h, w] = sum uint8 x[n, c, h', w'] * int8 W[o, c, kh, kw]            (int32)
    y = float32(acc + b_q[o] - zx * sum_c,kh,kw W[o, ...]) * (sx * sw[o])

which equals the float conv of the dequantized values up to one float32 rounding (the
interpreter's reference), far below a quantization step. The zero point's share is a per-channel
int32 constant (so the kernel multiplies raw bytes); where the input's zero point is not 0 and
the conv pads, or its channels are not a multiple of 4 (the stem's 3), the input is padded
explicitly with the zero point (then ``x - zx`` is 0 there, as the float conv's zero padding).
The bias, the scale, and whatever follows (relu, the residual add, the next quantize) are
elementwise: FuseOps puts them in the conv's epilogue, and ``rules.int8`` tensorizes the
multiply-accumulate with AVX-512 VNNI (``vpdpbusd``). Only where the target has VNNI:
elsewhere the conv stays a float conv of dequantized values (fake quantization, exact too).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from resdsl.ir import Node
from resdsl.ops.quant import QUANT_DTYPES, dequantize_ref
from resdsl.shapes import pair

# ``lower.py`` registers these in its table (this module does not import it: no cycle);
# ``cx`` is its ``Lowerer``.
Lowerer = Any


def _qparams(cx: Lowerer, node: Node, zp_dtype: str):
    scale, zp = np.asarray(node.attrs["scale"], np.float32), np.asarray(node.attrs["zero_point"])
    if scale.ndim or zp.ndim:  # per channel: Relax wants vectors of the channel count
        size = max(scale.size, zp.size)
        scale, zp = np.broadcast_to(scale, (size,)), np.broadcast_to(zp, (size,))
    relax = cx.relax
    return relax.const(np.ascontiguousarray(scale), "float32"), relax.const(
        np.ascontiguousarray(zp, zp_dtype), zp_dtype
    )


def _axis(node: Node) -> int:
    return int(node.attrs["axis"]) % len(node.shape)


def _per_tensor(node: Node) -> bool:
    return np.ndim(node.attrs["scale"]) == 0 and np.ndim(node.attrs["zero_point"]) == 0


def quantize(cx: Lowerer, node: Node, args: list):
    same = _same_grid_source(cx, node)
    if same is not None:  # dequantize then quantize on one grid: the values themselves
        return same
    requantized = _requantized(cx, node)
    if requantized is not None:
        return requantized
    if not _per_tensor(node):
        scale, zp = _qparams(cx, node, node.dtype)
        return cx.op.quantize(args[0], scale, zp, axis=_axis(node), out_dtype=node.dtype)
    op, lo, hi = cx.op, *QUANT_DTYPES[node.dtype]
    scaled = cx.emit(op.divide(args[0], cx.scalar(node.attrs["scale"])), node)
    shifted = cx.emit(op.add(cx.emit(op.round(scaled), node), cx.scalar(node.attrs["zero_point"])), node)
    # maximum/minimum, not clip: clip has no layout rule either
    clipped = cx.emit(op.minimum(cx.emit(op.maximum(shifted, cx.scalar(lo)), node), cx.scalar(hi)), node)
    return op.astype(clipped, node.dtype)


def _same_grid_source(cx: Lowerer, node: Node):
    """The quantized value ``node`` rounds back to, when its input is that value dequantized on
    the same grid (a dequantize, or a max pool of one: ``pooled_on_grid``): exact, so the
    arithmetic is left out. None otherwise."""
    known = cx.on_grid.get(cx.graph.args(node.id)[0])
    if known is None or not _per_tensor(node):
        return None
    value, grid = known
    return value if grid == (float(node.attrs["scale"]), int(node.attrs["zero_point"]), node.dtype) else None


def _grid(cx: Lowerer, node: Node) -> tuple[float, int, str]:
    """The (scale, zero point, dtype) a per-tensor dequantize ``node`` reads."""
    q = cx.graph.node(cx.graph.args(node.id)[0])
    return float(node.attrs["scale"]), int(node.attrs["zero_point"]), q.dtype


def dequantize(cx: Lowerer, node: Node, args: list):
    source = cx.graph.node(cx.graph.args(node.id)[0])
    if source.op == "param":  # a quantized weight or bias: dequantized here, once, by the reference
        value = dequantize_ref(cx.graph.parameters[source.attrs["name"]], **node.attrs)
        return cx.relax.const(value, "float32")
    if not _per_tensor(node):
        scale, zp = _qparams(cx, node, source.dtype)
        return cx.op.dequantize(args[0], scale, zp, axis=_axis(node), out_dtype="float32")
    cx.on_grid[node.id] = (args[0], _grid(cx, node))
    op = cx.op
    wide = cx.emit(op.astype(args[0], "int32"), node)
    if node.attrs["zero_point"]:
        wide = cx.emit(op.subtract(wide, cx.relax.const(int(node.attrs["zero_point"]), "int32")), node)
    return op.multiply(cx.emit(op.astype(wide, "float32"), node), cx.scalar(node.attrs["scale"]))


def pooled_on_grid(cx: Lowerer, node: Node, pool):
    """Max pooling of a dequantized value, pooled before dequantizing (``dequantize(pool(q))``):
    the same numbers, as dequantizing is increasing, from a quarter of the bytes (and the stem
    conv then writes uint8). None where the input is not a per-tensor dequantize (or no int8)."""
    g = cx.graph
    source = g.node(g.args(node.id)[0])
    if not cx.int8 or source.op != "dequantize" or not _per_tensor(source):
        return None
    q = g.args(source.id)[0]
    pooled = cx.emit(pool(cx.values[q]), node)
    out = dequantize(cx, source, [pooled])
    cx.on_grid[node.id] = (pooled, _grid(cx, source))
    return out


# ---------------------------------------------------------------- integer convolutions


def int8_conv(cx: Lowerer, node: Node):
    """The integer convolution ``node`` (a conv2d or fused_conv of an int8 graph) stands for,
    scaled back to float32 before its bias-free epilogue; None where it is not one (see the
    module doc) or the target has no VNNI (``cx.int8``)."""
    if not cx.int8 or int(node.attrs["groups"]) != 1 or pair(node.attrs["dilation"]) != (1, 1):
        return None
    g = cx.graph
    ins = g.args(node.id)
    x, w = g.node(ins[0]), g.node(ins[1])
    if x.op != "dequantize" or w.op != "dequantize" or not _per_tensor(x):
        return None
    xq, wp = g.node(g.args(x.id)[0]), g.node(g.args(w.id)[0])
    if xq.dtype != "uint8" or wp.op != "param" or wp.dtype != "int8" or np.any(w.attrs["zero_point"]):
        return None
    wq = g.parameters[wp.attrs["name"]].astype(np.int64)
    oc, ic = wq.shape[:2]
    sx, zx = np.float32(x.attrs["scale"]), int(x.attrs["zero_point"])
    scale = (sx * np.broadcast_to(np.asarray(w.attrs["scale"], np.float32), (oc,))).astype(np.float32)
    bias = _int_bias(g, ins[2], scale) if len(ins) > 2 else np.zeros(oc, np.int64)
    if bias is None:
        return None
    correction = bias - zx * wq.reshape(oc, -1).sum(axis=1)
    lo, hi = QUANT_DTYPES["int32"]
    if correction.min() < lo or correction.max() > hi:
        return None
    op, relax = cx.op, cx.relax
    data = cx.values[xq.id]
    ph, pw = pair(node.attrs["padding"])
    extra = -ic % 4
    if extra or (zx and (ph or pw)):  # pad with the zero point: x - zx is 0 there
        pads = [0, 0, 0, extra, ph, ph, pw, pw]
        data = cx.emit(op.nn.pad(data, pads, pad_value=float(zx)), node)
        wq = np.pad(wq, [(0, 0), (0, extra), (0, 0), (0, 0)])
        ph = pw = 0
    acc = cx.emit(
        op.nn.conv2d(
            data,
            relax.const(wq.astype(np.int8), "int8"),
            strides=pair(node.attrs["stride"]),
            padding=(ph, pw, ph, pw),
            out_dtype="int32",
        ),
        node,
    )
    acc = cx.emit(op.add(acc, relax.const(correction.astype(np.int32).reshape(1, oc, 1, 1), "int32")), node)
    real = cx.emit(op.astype(acc, "float32"), node)
    cx.accumulators[node.id] = (real, scale)
    return op.multiply(real, relax.const(scale.reshape(1, oc, 1, 1), "float32"))


def _requantized(cx: Lowerer, node: Node):
    """``quantize([relu](conv))`` of an integer conv as one multiply of its accumulator by
    ``s_x s_w[o] / s_y`` (the requantization scale, as ONNX Runtime's QLinearConv applies it),
    then round, zero point and saturation (relu: saturation at the zero point). The float
    conv's ``(acc s_x s_w) / s_y`` rounds twice; this once: they differ only where a value lies
    within a float32 rounding of a half step, which the one-step check allows. None where the
    input is not such a conv (the float value, if something else reads it, stays)."""
    g = cx.graph
    src = g.node(g.args(node.id)[0])
    relu = src.op == "relu"
    if relu:
        src = g.node(g.args(src.id)[0])
    record = cx.accumulators.get(src.id)
    if record is None or not _per_tensor(node) or node.dtype not in ("uint8", "int8"):
        return None
    if src.op == "fused_conv" and (len(g.args(src.id)) > 3 or src.attrs["activation"] not in ("none", "relu")):
        return None
    relu = relu or (src.op == "fused_conv" and src.attrs["activation"] == "relu")
    real, scale = record
    op, relax = cx.op, cx.relax
    zp, (lo, hi) = int(node.attrs["zero_point"]), QUANT_DTYPES[node.dtype]
    multiplier = (scale / np.float32(node.attrs["scale"])).astype(np.float32)
    v = cx.emit(op.multiply(real, relax.const(multiplier.reshape(1, -1, 1, 1), "float32")), node)
    v = cx.emit(op.add(cx.emit(op.round(v), node), cx.scalar(zp)), node)
    v = cx.emit(op.minimum(cx.emit(op.maximum(v, cx.scalar(max(lo, zp) if relu else lo)), node), cx.scalar(hi)), node)
    return op.astype(v, node.dtype)


def _int_bias(g, nid: int, scale: np.ndarray) -> np.ndarray | None:
    """The int32 bias on the accumulator's grid (``scale``), as the quantizer wrote it; None when
    the bias is not a dequantized int32 parameter of exactly that scale."""
    node = g.node(nid)
    if node.op != "dequantize" or np.any(node.attrs["zero_point"]):
        return None
    source = g.node(g.args(nid)[0])
    if source.op != "param" or source.dtype != "int32":
        return None
    if not np.array_equal(np.broadcast_to(np.asarray(node.attrs["scale"], np.float32), scale.shape), scale):
        return None
    return g.parameters[source.attrs["name"]].astype(np.int64)

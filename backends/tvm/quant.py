"""Relax lowerings of ``quantize`` and ``dequantize``: Relax's own QDQ ops, whose legalisation
rounds half to even and saturates as ONNX (and the interpreter) do.

Why Relax's ops and not a hand-written round/clip: they are the same arithmetic, one op each.
A dequantized parameter (an int8 weight, an int32 bias) becomes a float32 constant at lowering,
computed by the op's reference (the same float32 ``(q - zero_point) * scale``), so the float32
kernels see constant weights and pack them at compile time as they do for a float model: this
is fake-quant (exact to the interpreter), not int8 kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from resdsl.ir import Node

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


def quantize(cx: Lowerer, node: Node, args: list):
    scale, zp = _qparams(cx, node, node.dtype)
    return cx.op.quantize(args[0], scale, zp, axis=_axis(node), out_dtype=node.dtype)


def dequantize(cx: Lowerer, node: Node, args: list):
    source = cx.graph.node(cx.graph.args(node.id)[0])
    if source.op == "param":  # a quantized weight or bias: dequantized here, once, by the reference
        from resdsl.ops.quant import dequantize_ref

        value = dequantize_ref(cx.graph.parameters[source.attrs["name"]], **node.attrs)
        return cx.relax.const(value, "float32")
    zp_dtype = source.dtype
    scale, zp = _qparams(cx, node, zp_dtype)
    return cx.op.dequantize(args[0], scale, zp, axis=_axis(node), out_dtype="float32")

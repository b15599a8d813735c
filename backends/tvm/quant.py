"""Relax lowerings of ``quantize`` and ``dequantize``: Relax's own QDQ ops, whose legalisation
rounds half to even and saturates as ONNX (and the interpreter) do.

Why Relax's ops and not a hand-written round/clip: Relax keeps ``dequantize`` of a constant
int8 weight foldable, so a QDQ graph builds with the float32 kernels (fake-quant, exact to the
interpreter); int8 kernels are a schedule on top of the same module.
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
    zp_dtype = cx.graph.node(cx.graph.args(node.id)[0]).dtype
    scale, zp = _qparams(cx, node, zp_dtype)
    return cx.op.dequantize(args[0], scale, zp, axis=_axis(node), out_dtype="float32")

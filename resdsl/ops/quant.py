"""Quantization: ``quantize`` (float32 -> int8/uint8/int32) and ``dequantize`` (-> float32).

Why two explicit ops (QDQ) rather than quantized variants of every op: a quantized graph
is then the float graph with ``dequantize(quantize(x))`` pairs inserted where values are
rounded to their grid, so every existing op, pass and backend lowering keeps working, and
the interpreter computes the quantized model exactly: a conv of dequantized values (which
lie on the grids ``scale * (q - zero_point)``) is the int32 accumulation times the scales,
up to float rounding far below one quantization step. ONNX Runtime fuses the same pattern
(DQ -> Conv -> Q) into QLinearConv, so the ONNX lowering is one node per op.

The arithmetic is ONNX's QuantizeLinear / DequantizeLinear: ``q = saturate(round(x / scale)
+ zero_point)`` with round half to even, saturation to the dtype's range, division in
float32; ``x = (q - zero_point) * scale`` in float32. ``scale`` and ``zero_point`` are a
number (per tensor) or a tuple (per channel along ``axis``), normalised at node creation.
"""

from __future__ import annotations

import numpy as np

from ..registry import Attr, ShapeError, register
from .common import N, same_shape

QUANT_DTYPES = {"int8": (-128, 127), "uint8": (0, 255), "int32": (-(2**31), 2**31 - 1)}


def _numbers(value) -> float | tuple[float, ...]:
    if np.ndim(value) == 0:
        return float(value)
    return tuple(float(v) for v in np.asarray(value).ravel())


def _scale(value) -> float | tuple[float, ...]:
    out = _numbers(value)
    if min(np.atleast_1d(out)) <= 0 or not np.all(np.isfinite(out)):
        raise ValueError("must be positive and finite")
    return out


def _zero_point(value) -> int | tuple[int, ...]:
    out = _numbers(value)
    if any(v != int(v) for v in np.atleast_1d(out)):
        raise ValueError("must be integers")
    return int(out) if isinstance(out, float) else tuple(int(v) for v in out)


def _qdtype(value) -> str:
    if value not in QUANT_DTYPES:
        raise ValueError(f"must be one of {', '.join(QUANT_DTYPES)}")
    return str(value)


QPARAMS = {"scale": Attr(1.0, _scale), "zero_point": Attr(0, _zero_point), "axis": Attr(1, int)}


def _broadcast(value, x: np.ndarray, axis: int, dtype) -> np.ndarray:
    """A per-tensor number, or a per-channel vector shaped to broadcast along ``axis``."""
    v = np.asarray(value, dtype)
    if v.ndim == 0:
        return v
    shape = [1] * x.ndim
    shape[axis % x.ndim] = v.size
    return v.reshape(shape)


def _check_channels(shapes, a, what: str) -> None:
    sizes = {np.size(a["scale"]), np.size(a["zero_point"])} - {1}
    if not sizes:
        return
    x = shapes[0]
    if not -len(x) <= a["axis"] < len(x):
        raise ShapeError(f"{what}: axis {a['axis']} is out of range for rank {len(x)}")
    if len(sizes) > 1 or (not isinstance(x[a["axis"]], str) and x[a["axis"]] not in sizes):
        raise ShapeError(f"{what}: per-channel parameters of size {sorted(sizes)} do not fit axis {a['axis']} of {x}")


def quantize_ref(x, *, scale, zero_point, axis, dtype):
    lo, hi = QUANT_DTYPES[dtype]
    s = _broadcast(scale, x, axis, np.float32)
    zp = _broadcast(zero_point, x, axis, np.float64)
    q = np.rint(np.asarray(x, np.float32) / s).astype(np.float64) + zp
    return np.clip(q, lo, hi).astype(dtype)


def dequantize_ref(q, *, scale, zero_point, axis):
    s = _broadcast(scale, q, axis, np.float32)
    zp = _broadcast(zero_point, q, axis, np.int64)
    return ((q.astype(np.int64) - zp).astype(np.float32) * s).astype(np.float32)


def _quantize_dtype(dtypes: list[str], a: dict) -> str:
    if dtypes[0] != "float32":
        raise ShapeError(f"quantize reads float32, not {dtypes[0]}")
    return a["dtype"]


def _dequantize_dtype(dtypes: list[str], a: dict) -> str:
    if dtypes[0] not in QUANT_DTYPES:
        raise ShapeError(f"dequantize reads {', '.join(QUANT_DTYPES)}, not {dtypes[0]}")
    return "float32"


X4 = (N, 4, 5, 5)
# Scales are powers of two, so x / scale is exact in every implementation and ties stay ties.
Q4 = np.random.default_rng(0).integers(-128, 128, (6, 4, 3, 3)).astype(np.int8)


@register(
    "quantize",
    "float32 -> int8/uint8/int32 as ONNX QuantizeLinear: round half to even, saturate",
    inputs=("x",),
    attrs={**QPARAMS, "dtype": Attr("uint8", _qdtype)},
    dtype=_quantize_dtype,
    cases=[
        ("quantize_u8", [X4], {"scale": 0.015625, "zero_point": 128}, {}),
        ("quantize_i8_channel", [X4], {"scale": (0.25, 0.125, 0.0625, 0.5), "dtype": "int8"}, {}),
    ],
)
class Quantize:
    @staticmethod
    def infer(shapes, a):
        _check_channels(shapes, a, "quantize")
        return shapes[0]

    reference = staticmethod(quantize_ref)


@register(
    "dequantize",
    "int8/uint8/int32 -> float32 as ONNX DequantizeLinear: (q - zero_point) * scale",
    inputs=("q",),
    attrs=QPARAMS,
    dtype=_dequantize_dtype,
    cases=[
        ("dequantize_i8_channel", ["q"], {"scale": tuple(0.5 ** np.arange(1, 7)), "axis": 0}, {"q": Q4}),
        ("dequantize_u8", ["q"], {"scale": 0.03125, "zero_point": 7}, {"q": Q4.view(np.uint8)}),
    ],
)
class Dequantize:
    @staticmethod
    def infer(shapes, a):
        _check_channels(shapes, a, "dequantize")
        return same_shape(shapes, a)

    reference = staticmethod(dequantize_ref)

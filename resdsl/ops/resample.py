"""Resampling: nearest and bilinear interpolation to a given size (torch.nn.functional.interpolate).

The coordinate rules are PyTorch's: nearest maps an output pixel i to input floor(i * in / out);
bilinear without align_corners samples at (i + 0.5) * in / out - 0.5 (clamped at 0), with
align_corners at i * (in - 1) / (out - 1). ONNX Resize's ``asymmetric``/``floor``,
``half_pixel`` and ``align_corners`` modes, and TVM's resize2d, compute the same.
"""

from __future__ import annotations

import numpy as np

from ..registry import REQUIRED, Attr, ShapeError, register
from ..shapes import pair
from .common import N, rank


def _mode(value) -> str:
    if value not in ("nearest", "bilinear"):
        raise ValueError("must be 'nearest' or 'bilinear'")
    return str(value)


def _positive_pair(value) -> tuple[int, int]:
    out = pair(value)
    if min(out) <= 0:
        raise ValueError("sizes must be positive")
    return out


def _source(out_size: int, in_size: int, mode: str, align_corners: bool) -> np.ndarray:
    i = np.arange(out_size, dtype=np.float64)
    if mode == "nearest":
        return np.minimum(np.floor(i * in_size / out_size), in_size - 1)
    if align_corners:
        return i * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros(out_size)
    return np.maximum((i + 0.5) * in_size / out_size - 0.5, 0.0)


def _resample_axis(x: np.ndarray, axis: int, out_size: int, mode: str, align_corners: bool) -> np.ndarray:
    in_size = x.shape[axis]
    src = _source(out_size, in_size, mode, align_corners)
    if mode == "nearest":
        return np.take(x, src.astype(np.int64), axis=axis)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = (src - lo).reshape([-1 if d == axis else 1 for d in range(x.ndim)])
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac


@register(
    "resize",
    "nearest or bilinear interpolation of H and W to `size`, PyTorch's coordinate rules",
    inputs=("x",),
    attrs={"size": Attr(REQUIRED, _positive_pair), "mode": Attr("nearest", _mode), "align_corners": Attr(False, bool)},
    cases=[
        ("resize_nearest_x2", [(N, 3, 5, 4)], {"size": (10, 8)}, {}),
        ("resize_nearest_down", [(N, 3, 9, 9)], {"size": (4, 6)}, {}),
        ("resize_bilinear", [(N, 3, 5, 4)], {"size": (10, 7), "mode": "bilinear"}, {}),
        ("resize_bilinear_ac", [(N, 3, 5, 4)], {"size": (9, 7), "mode": "bilinear", "align_corners": True}, {}),
    ],
)
class Resize:
    @staticmethod
    def infer(shapes, a):
        x = shapes[0]
        rank(x, 4, "resize")
        if a["align_corners"] and a["mode"] == "nearest":
            raise ShapeError("resize: align_corners applies to bilinear only")
        return (x[0], x[1], *a["size"])

    @staticmethod
    def reference(x, *, size, mode, align_corners):
        y = x.astype(np.float64)
        for axis, out in ((2, size[0]), (3, size[1])):
            y = _resample_axis(y, axis, out, mode, align_corners)
        return np.ascontiguousarray(y, dtype=x.dtype)

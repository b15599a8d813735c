"""Pooling: max and average windows, global average."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..registry import ShapeError, register
from .common import N, pair_attr, rank, window_out

X4 = (N, 4, 9, 9)


def _window(a: dict) -> tuple:
    """(kernel, stride, padding) as pairs; a stride of None means the kernel's."""
    return a["kernel"], a["stride"] or a["kernel"], a["padding"]


def _pool_shape(name):
    def infer(shapes, a):
        x = shapes[0]
        rank(x, 4, name)
        (kh, kw), (sh, sw), (ph, pw) = _window(a)
        if 2 * ph > kh or 2 * pw > kw:
            raise ShapeError(f"{name}: padding must be at most half the kernel")
        return (x[0], x[1], window_out(x[2], kh, sh, ph, 1, name), window_out(x[3], kw, sw, pw, 1, name))

    return infer


def _pool_windows(x, a, fill):
    (kh, kw), (sh, sw), (ph, pw) = _window(a)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    return sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


POOL_ATTRS = {"kernel": pair_attr(), "stride": pair_attr(None), "padding": pair_attr(0)}


@register(
    "max_pool2d",
    "max over windows; padding counts as -inf",
    inputs=("x",),
    attrs=POOL_ATTRS,
    cases=[("max_pool2d", [X4], {"kernel": 3, "stride": 2, "padding": 1}, {})],
)
class MaxPool:
    infer = staticmethod(_pool_shape("max_pool2d"))
    reference = staticmethod(lambda x, **a: _pool_windows(x, a, -np.inf).max(axis=(4, 5)).astype(x.dtype))


@register(
    "avg_pool2d",
    "mean over windows; padding counts as zeros",
    inputs=("x",),
    attrs=POOL_ATTRS,
    cases=[
        ("avg_pool2d", [X4], {"kernel": 3, "stride": 2, "padding": 1}, {}),
        ("avg_pool2d_k1", [X4], {"kernel": 1, "stride": 2}, {}),
    ],
)
class AvgPool:
    infer = staticmethod(_pool_shape("avg_pool2d"))
    reference = staticmethod(lambda x, **a: _pool_windows(x, a, 0.0).mean(axis=(4, 5)).astype(x.dtype))


@register(
    "global_avg_pool",
    "mean over H and W, keeping them as 1",
    inputs=("x",),
    cases=[("global_avg_pool", [X4], {}, {})],
)
class GlobalAvgPool:
    @staticmethod
    def infer(shapes, a):
        rank(shapes[0], 4, "global_avg_pool")
        return shapes[0][:2] + (1, 1)

    reference = staticmethod(lambda x: x.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(x.dtype))

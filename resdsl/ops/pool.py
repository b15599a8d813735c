"""Pooling: max and average windows, global average."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..registry import Attr, ShapeError, register
from .common import N, pair_attr, rank, window_out

X4 = (N, 4, 9, 9)


def _window(a: dict) -> tuple:
    """(kernel, stride, padding) as pairs; a stride of None means the kernel's."""
    return a["kernel"], a["stride"] or a["kernel"], a["padding"]


def _out_hw(x_hw, a, what="pool"):
    (kh, kw), (sh, sw), (ph, pw) = _window(a)
    ceil = a.get("ceil_mode", False)
    return (window_out(x_hw[0], kh, sh, ph, 1, what, ceil), window_out(x_hw[1], kw, sw, pw, 1, what, ceil))


def _pool_shape(name):
    def infer(shapes, a):
        x = shapes[0]
        rank(x, 4, name)
        (kh, kw), _, (ph, pw) = _window(a)
        if 2 * ph > kh or 2 * pw > kw:
            raise ShapeError(f"{name}: padding must be at most half the kernel")
        return (x[0], x[1], *_out_hw(x[2:], a, name))

    return infer


def _pool_windows(x, a, fill):
    """Windows over x padded by ``padding`` (and, in ceil mode, by what the last window overhangs)."""
    (kh, kw), (sh, sw), (ph, pw) = _window(a)
    oh, ow = _out_hw(x.shape[2:], a)
    extra_h = max((oh - 1) * sh + kh - (x.shape[2] + 2 * ph), 0)
    extra_w = max((ow - 1) * sw + kw - (x.shape[3] + 2 * pw), 0)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w)), constant_values=fill)
    return sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]


def _avg_reference(x, **a):
    """Mean over each window. PyTorch's divisor: with count_include_pad the window clipped to the
    padded input, without it the window clipped to the input itself (ceil mode's overhang never counts)."""
    total = _pool_windows(x.astype(np.float64), a, 0.0).sum(axis=(4, 5))
    (ph, pw) = a["padding"]
    inside = np.ones((1, 1) + x.shape[2:])
    if a.get("count_include_pad", True):
        inside = np.pad(inside, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=1.0)
        # the windows of the pre-padded mask start where the padded input starts; ceil mode may
        # give the bigger mask one window more than the input has
        oh, ow = total.shape[2:]
        counted = _pool_windows(inside, {**a, "padding": (0, 0)}, 0.0).sum(axis=(4, 5))[:, :, :oh, :ow]
    else:
        counted = _pool_windows(inside, a, 0.0).sum(axis=(4, 5))
    return (total / counted).astype(x.dtype)


POOL_ATTRS = {"kernel": pair_attr(), "stride": pair_attr(None), "padding": pair_attr(0), "ceil_mode": Attr(False, bool)}


@register(
    "max_pool2d",
    "max over windows; padding counts as -inf",
    inputs=("x",),
    attrs=POOL_ATTRS,
    cases=[
        ("max_pool2d", [X4], {"kernel": 3, "stride": 2, "padding": 1}, {}),
        ("max_pool2d_ceil", [(N, 4, 8, 8)], {"kernel": 3, "stride": 2, "ceil_mode": True}, {}),
    ],
)
class MaxPool:
    infer = staticmethod(_pool_shape("max_pool2d"))
    reference = staticmethod(lambda x, **a: _pool_windows(x, a, -np.inf).max(axis=(4, 5)).astype(x.dtype))


@register(
    "avg_pool2d",
    "mean over windows; padding counts as zeros unless count_include_pad is false",
    inputs=("x",),
    attrs={**POOL_ATTRS, "count_include_pad": Attr(True, bool)},
    cases=[
        ("avg_pool2d", [X4], {"kernel": 3, "stride": 2, "padding": 1}, {}),
        ("avg_pool2d_k1", [X4], {"kernel": 1, "stride": 2}, {}),
        ("avg_pool2d_exclude_pad", [X4], {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False}, {}),
        ("avg_pool2d_ceil", [(N, 4, 8, 8)], {"kernel": 3, "stride": 2, "ceil_mode": True}, {}),
        ("avg_pool2d_ceil_pad", [(N, 3, 9, 10)], {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, {}),
    ],
)
class AvgPool:
    infer = staticmethod(_pool_shape("avg_pool2d"))
    reference = staticmethod(_avg_reference)


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

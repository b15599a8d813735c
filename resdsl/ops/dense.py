"""Dense products: linear layers and batched matrix products."""

from __future__ import annotations

import numpy as np

from ..registry import ShapeError, register
from ..shapes import broadcast, fmt
from .cast import widen
from .common import N, contract_last, rank


@register(
    "linear",
    "y = x W^T + b over the last axis; W is (out, in)",
    inputs=("x", "weight", "bias"),
    optional_inputs=1,
    macs=contract_last,
    cases=[
        ("linear", [(N, 7)], {}, {"w": (5, 7), "b": (5,)}),
        ("linear_3d", [(N, 3, 7)], {}, {"w": (5, 7), "b": (5,)}),
        ("linear_nobias", [(N, 7)], {}, {"w": (5, 7)}),
    ],
)
class Linear:
    @staticmethod
    def infer(shapes, a):
        x, w = shapes[0], shapes[1]
        rank(w, 2, "linear weight")
        if len(x) < 2 or x[-1] != w[1]:
            raise ShapeError(f"linear: input {fmt(x)} has {x[-1]} features, weight {fmt(w)} expects {w[1]}")
        if len(shapes) > 2 and tuple(shapes[2]) != (w[0],):
            raise ShapeError(f"linear: bias must have shape ({w[0]},)")
        return x[:-1] + (w[0],)

    @staticmethod
    def reference(x, w, b=None):
        xw, w, b = widen(x, w, b)  # float16/bfloat16 accumulate in float32 and round once
        y = xw @ w.T
        return (y if b is None else y + b).astype(x.dtype)


@register(
    "matmul",
    "batched matrix product with broadcasting",
    inputs=("a", "b"),
    macs=contract_last,
    cases=[
        ("matmul", [(N, 2, 3, 4), (N, 2, 4, 5)], {}, {}),
        ("matmul_bcast", [(N, 3, 4)], {}, {"w": (4, 6)}),
    ],
)
class Matmul:
    @staticmethod
    def infer(shapes, a):
        x, y = shapes
        if len(x) < 2 or len(y) < 2 or x[-1] != y[-2]:
            raise ShapeError(f"matmul: {fmt(x)} @ {fmt(y)} do not chain")
        batch = broadcast(x[:-2], y[:-2])
        if batch is None:
            raise ShapeError(f"matmul: batch dimensions of {fmt(x)} and {fmt(y)} do not broadcast")
        return batch + (x[-2], y[-1])

    reference = staticmethod(lambda a, b: np.matmul(*widen(a, b)).astype(a.dtype))

"""Reductions over axes: mean, sum and max, with PyTorch's keepdim."""

from __future__ import annotations

import numpy as np

from ..registry import REQUIRED, Attr, ShapeError, register
from ..shapes import fmt
from .common import N

X4 = (N, 4, 9, 9)


def _axes(value) -> tuple[int, ...]:
    axes = (value,) if isinstance(value, int) else tuple(value)
    if not axes or any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
        raise ValueError("must be an int or a non-empty sequence of ints")
    return tuple(int(a) for a in axes)


def _reduce_shape(name: str):
    def infer(shapes, a):
        x = shapes[0]
        axes = [ax % len(x) if -len(x) <= ax < len(x) else None for ax in a["axes"]]
        if None in axes:
            raise ShapeError(f"{name}: axes {a['axes']} out of range for a rank-{len(x)} input {fmt(x)}")
        if len(set(axes)) != len(axes):
            raise ShapeError(f"{name}: axes {a['axes']} repeat an axis")
        if any(isinstance(x[ax], str) for ax in axes):
            raise ShapeError(f"{name} cannot reduce the batch dimension")
        if a["keepdim"]:
            return tuple(1 if i in axes else d for i, d in enumerate(x))
        return tuple(d for i, d in enumerate(x) if i not in axes)

    return infer


REDUCE_ATTRS = {"axes": Attr(REQUIRED, _axes), "keepdim": Attr(False, bool)}


def _cases(name: str) -> list:
    return [(name, [X4], {"axes": (2, 3), "keepdim": True}, {}), (f"{name}_axis1", [X4], {"axes": 1}, {})]


@register(
    "reduce_mean",
    "mean over axes (torch.mean(x, dim, keepdim)), accumulated in float64",
    inputs=("x",),
    attrs=REDUCE_ATTRS,
    cases=_cases("reduce_mean"),
)
class ReduceMean:
    infer = staticmethod(_reduce_shape("reduce_mean"))
    reference = staticmethod(
        lambda x, *, axes, keepdim: x.mean(axis=axes, keepdims=keepdim, dtype=np.float64).astype(x.dtype)
    )


@register("reduce_sum", "sum over axes", inputs=("x",), attrs=REDUCE_ATTRS, cases=_cases("reduce_sum"))
class ReduceSum:
    infer = staticmethod(_reduce_shape("reduce_sum"))
    reference = staticmethod(
        lambda x, *, axes, keepdim: x.sum(axis=axes, keepdims=keepdim, dtype=np.float64).astype(x.dtype)
    )


@register("reduce_max", "max over axes", inputs=("x",), attrs=REDUCE_ATTRS, cases=_cases("reduce_max"))
class ReduceMax:
    infer = staticmethod(_reduce_shape("reduce_max"))
    reference = staticmethod(lambda x, *, axes, keepdim: x.max(axis=axes, keepdims=keepdim))

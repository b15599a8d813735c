"""Elementwise activations, identity and softmax."""

from __future__ import annotations

import math

import numpy as np

from ..registry import register
from .common import N, int_attr, same_shape

X4 = (N, 4, 9, 9)
_erf = np.frompyfunc(math.erf, 1, 1)


def _unary_case(name: str) -> list:
    return [(name, [X4], {}, {})]


@register("relu", "max(x, 0)", inputs=("x",), cases=_unary_case("relu"))
class Relu:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x: np.maximum(x, 0).astype(x.dtype))


@register("sigmoid", "1 / (1 + exp(-x))", inputs=("x",), cases=_unary_case("sigmoid"))
class Sigmoid:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x: (1 / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype))


@register("silu", "x * sigmoid(x)", inputs=("x",), cases=_unary_case("silu"))
class Silu:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x: (x / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype))


@register("gelu", "x * Phi(x), the exact (erf) form", inputs=("x",), cases=_unary_case("gelu"))
class Gelu:
    infer = staticmethod(same_shape)

    @staticmethod
    def reference(x):
        x64 = x.astype(np.float64)
        return (0.5 * x64 * (1 + _erf(x64 / math.sqrt(2)).astype(np.float64))).astype(x.dtype)


@register("identity", "x", inputs=("x",), cases=_unary_case("identity"))
class Identity:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x: x)


@register(
    "softmax",
    "softmax along an axis",
    inputs=("x",),
    attrs={"axis": int_attr(-1)},
    cases=[("softmax", [(N, 3, 7)], {"axis": -1}, {}), ("softmax_axis1", [(N, 3, 7)], {"axis": 1}, {})],
)
class Softmax:
    infer = staticmethod(same_shape)

    @staticmethod
    def reference(x, *, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)

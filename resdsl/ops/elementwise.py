"""Elementwise arithmetic with broadcasting: add, sub, mul and the variadic sum."""

from __future__ import annotations

import numpy as np

from ..registry import REQUIRED, Attr, ShapeError, register
from ..shapes import broadcast, fmt
from .common import N, per_element, same_shape

X4 = (N, 4, 9, 9)


def _binary(name):
    def infer(shapes, a):
        out = broadcast(shapes[0], shapes[1])
        if out is None:
            raise ShapeError(f"{name}: shapes {fmt(shapes[0])} and {fmt(shapes[1])} do not broadcast")
        return out

    return infer


@register(
    "add",
    "a + b with broadcasting",
    inputs=("a", "b"),
    cases=[("add", [X4, X4], {}, {}), ("add_bcast", [X4, (N, 4, 1, 1)], {}, {})],
)
class Add:
    infer = staticmethod(_binary("add"))
    reference = staticmethod(lambda a, b: (a + b).astype(np.result_type(a, b)))


@register(
    "sub",
    "a - b with broadcasting",
    inputs=("a", "b"),
    cases=[("sub", [X4], {}, {"c": np.array(1.0, np.float32)})],
)
class Sub:
    infer = staticmethod(_binary("sub"))
    reference = staticmethod(lambda a, b: (a - b).astype(np.result_type(a, b)))


@register(
    "mul",
    "a * b with broadcasting",
    inputs=("a", "b"),
    macs=per_element,
    cases=[("mul", [X4, (N, 4, 1, 1)], {}, {})],
)
class Mul:
    infer = staticmethod(_binary("mul"))
    reference = staticmethod(lambda a, b: (a * b).astype(np.result_type(a, b)))


@register("sum", "the sum of all inputs (variadic add)", inputs=("x*",), cases=[("sum", [X4, X4, X4], {}, {})])
class Sum:
    @staticmethod
    def infer(shapes, a):
        out = shapes[0]
        for s in shapes[1:]:
            out = broadcast(out, s)
            if out is None:
                raise ShapeError(f"sum: shapes {', '.join(map(fmt, shapes))} do not broadcast")
        return out

    @staticmethod
    def reference(*xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out.astype(xs[0].dtype)


@register(
    "div",
    "a / b with broadcasting",
    inputs=("a", "b"),
    macs=per_element,
    cases=[("div", [X4, (N, 4, 1, 1)], {}, {})],
)
class Div:
    infer = staticmethod(_binary("div"))
    reference = staticmethod(lambda a, b: (a / b).astype(np.result_type(a, b)))


@register(
    "pow",
    "x ** exponent for a constant exponent (x * x for 2, so no log is taken)",
    inputs=("x",),
    attrs={"exponent": Attr(REQUIRED, float)},
    macs=per_element,
    cases=[("pow_2", [X4], {"exponent": 2.0}, {}), ("pow_3", [X4], {"exponent": 3.0}, {})],
)
class Pow:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x, *, exponent: np.power(x.astype(np.float64), exponent).astype(x.dtype))

"""Elementwise activations, identity and softmax."""

from __future__ import annotations

import math

import numpy as np

from ..registry import Attr, register
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


# ---------------------------------------------------------------- PyTorch's other activations


def _float_attr(default: float) -> Attr:
    return Attr(default, float)


@register(
    "clip",
    "min(max(x, min), max): relu6 is clip(x, 0, 6), hardtanh clip(x, -1, 1)",
    inputs=("x",),
    attrs={"min": _float_attr(0.0), "max": _float_attr(6.0)},
    cases=[("relu6", [X4], {"min": 0.0, "max": 6.0}, {}), ("clip_pm1", [X4], {"min": -1.0, "max": 1.0}, {})],
)
class Clip:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x, *, min, max: np.clip(x, min, max).astype(x.dtype))  # noqa: A006


@register(
    "hardsigmoid",
    "relu6(x + 3) / 6, as torch.nn.Hardsigmoid (ONNX HardSigmoid with alpha 1/6, beta 1/2)",
    inputs=("x",),
    cases=_unary_case("hardsigmoid"),
)
class Hardsigmoid:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x: (np.clip(x.astype(np.float64) + 3.0, 0.0, 6.0) / 6.0).astype(x.dtype))


@register(
    "hardswish",
    "x * relu6(x + 3) / 6, as torch.nn.Hardswish",
    inputs=("x",),
    cases=_unary_case("hardswish"),
)
class Hardswish:
    infer = staticmethod(same_shape)

    @staticmethod
    def reference(x):
        x64 = x.astype(np.float64)
        return (x64 * np.clip(x64 + 3.0, 0.0, 6.0) / 6.0).astype(x.dtype)


@register("tanh", "tanh(x)", inputs=("x",), cases=_unary_case("tanh"))
class Tanh:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x: np.tanh(x.astype(np.float64)).astype(x.dtype))


@register(
    "leaky_relu",
    "x where x >= 0, else negative_slope * x",
    inputs=("x",),
    attrs={"negative_slope": _float_attr(0.01)},
    cases=[("leaky_relu", [X4], {"negative_slope": 0.2}, {})],
)
class LeakyRelu:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x, *, negative_slope: np.where(x >= 0, x, x * negative_slope).astype(x.dtype))


@register(
    "elu",
    "x where x > 0, else alpha * (exp(x) - 1)",
    inputs=("x",),
    attrs={"alpha": _float_attr(1.0)},
    cases=[("elu", [X4], {"alpha": 0.7}, {})],
)
class Elu:
    infer = staticmethod(same_shape)

    @staticmethod
    def reference(x, *, alpha):
        x64 = x.astype(np.float64)
        return np.where(x64 > 0, x64, alpha * np.expm1(np.minimum(x64, 0))).astype(x.dtype)


def _probability(value) -> float:
    p = float(value)
    if not 0.0 <= p < 1.0:
        raise ValueError("must be in [0, 1)")
    return p


def _sd_mode(value) -> str:
    if value not in ("row", "batch"):
        raise ValueError("must be 'row' or 'batch'")
    return str(value)


@register(
    "dropout",
    "identity at inference; p is recorded for training (the PyTorch export applies it in train())",
    inputs=("x",),
    attrs={"p": Attr(0.5, _probability)},
    cases=[("dropout", [X4], {"p": 0.2}, {})],
)
class Dropout:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x, *, p: x)


@register(
    "stochastic_depth",
    "identity at inference; drops a residual branch with probability p in training (torchvision's mode)",
    inputs=("x",),
    attrs={"p": Attr(0.0, _probability), "mode": Attr("row", _sd_mode)},
    cases=[("stochastic_depth", [X4], {"p": 0.1}, {})],
)
class StochasticDepth:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x, *, p, mode: x)

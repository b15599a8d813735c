"""What the op families share: attribute normalisers, rank checks, window arithmetic, MAC rules."""

from __future__ import annotations

from typing import Any

from ..registry import REQUIRED, Attr, ShapeError
from ..shapes import Shape, fmt, numel, pair

N = "N"  # the batch symbol, in test cases

# The activations a fused op may apply: each is also an op of its own, whose reference
# (and, in each backend, whose lowering) is the one definition of what it computes.
ACTIVATIONS = ("none", "relu", "sigmoid")


def activation(value: Any) -> str:
    if value not in ACTIVATIONS:
        raise ValueError(f"must be one of {', '.join(ACTIVATIONS)}")
    return str(value)


def pair_attr(default: Any = REQUIRED) -> Attr:
    """An int-or-pair attribute (kernel, stride, padding, dilation), stored as ``(h, w)``."""
    return Attr(default, pair)


def int_attr(default: Any = REQUIRED) -> Attr:
    return Attr(default, _int)


def _int(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value:
        raise ValueError("must be an integer")
    return int(value)


def rank(shape: Shape, r: int, what: str) -> None:
    if len(shape) != r:
        raise ShapeError(f"{what} expects a rank-{r} input, got shape {fmt(shape)}")


def window_out(size, k: int, s: int, p: int, d: int, what: str, ceil: bool = False):
    """Output extent of a sliding window (conv, pool); the batch symbol passes through."""
    if isinstance(size, str):
        return size
    span = size + 2 * p - d * (k - 1) - 1
    if span < 0:
        raise ShapeError(f"{what}: the window ({k}) is larger than the padded input ({size + 2 * p})")
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def same_shape(shapes: list[Shape], a: dict) -> Shape:
    return shapes[0]


# MAC rules. Products (conv, linear, matmul) count one MAC per product term; normalisations
# and elementwise multiplies count one per element (a scale and shift); additions,
# activations, pooling and data movement count none, as the published figures
# (ResNet-50: 4.1 GMACs) do.


def per_element(out: Shape, ins: list[Shape], a: dict) -> int:
    return numel(out)


def contract_last(out: Shape, ins: list[Shape], a: dict) -> int:
    return numel(out) * ins[0][-1]

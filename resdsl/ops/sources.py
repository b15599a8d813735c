"""Graph inputs and parameters: values that no op computes."""

from __future__ import annotations

from ..registry import REQUIRED, register


def _declared_dtype(dtypes: list[str], a: dict) -> str:
    return a["dtype"]


@register(
    "input",
    "A graph input.",
    inputs=(),
    attrs={"name": REQUIRED, "shape": REQUIRED, "dtype": "float32"},
    dtype=_declared_dtype,
)
class Input:
    infer = staticmethod(lambda shapes, a: tuple(a["shape"]))
    reference = None


@register(
    "param",
    "A named parameter held by the graph (its dtype is its array's: float32, float16/bfloat16 after "
    "convert_dtype, integer for quantized weights).",
    inputs=(),
    attrs={"name": REQUIRED, "shape": REQUIRED, "dtype": "float32"},
    dtype=_declared_dtype,
)
class Param:
    infer = staticmethod(lambda shapes, a: tuple(a["shape"]))
    reference = None

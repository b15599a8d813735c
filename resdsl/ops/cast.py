"""Float dtypes and the ``cast`` op: the one place that names the floats resdsl computes in.

Why a module of its own: reduced precision (``convert_dtype``) needs one definition of
which dtype names exist, how each maps to a NumPy dtype (bfloat16 comes from
``ml_dtypes``, imported only when asked for), and where products accumulate.

The interpreter's rule for reduced floats, followed by every reference: products
(conv, linear, matmul) and reductions accumulate in float32, as GPU and CPU kernels
do, and round once to the output dtype; elementwise ops compute in the dtype itself
(NumPy float16 ufuncs, ml_dtypes bfloat16 ufuncs: each op computed wider and rounded).
"""

from __future__ import annotations

import numpy as np

from ..registry import REQUIRED, Attr, register
from .common import N, same_shape

FLOATS = ("float32", "float16", "bfloat16")
REDUCED = ("float16", "bfloat16")
# What `run --check` accepts (max |got - want| / max |want|) between a backend and the
# interpreter computing in the same dtype: float32 as resdsl.numerics.TOLERANCE; the reduced
# floats from the worst error measured over resnet18, the ViT and the residual MLP (README).
TOLERANCES = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a resdsl dtype name (bfloat16 registers itself when ml_dtypes is imported)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def is_float(name: str) -> bool:
    return name in FLOATS or name == "float64"


def accumulator(dtype: np.dtype) -> np.dtype:
    """Where a product or reduction over ``dtype`` accumulates: float32 for the reduced floats."""
    return np.dtype(np.float32) if str(dtype) in REDUCED else np.dtype(dtype)


def widen(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays in their accumulator dtype (float16/bfloat16 -> float32, others as they are)."""
    return [a if a is None else a.astype(accumulator(a.dtype), copy=False) for a in arrays]


def _dtype_attr(value) -> str:
    if value not in FLOATS:
        raise ValueError(f"must be one of {', '.join(FLOATS)}")
    return str(value)


def _cast_dtype(dtypes: list[str], a: dict) -> str:
    return a["dtype"]


@register(
    "cast",
    "x converted to another float dtype, rounding to nearest even (what convert_dtype places around float32 islands)",
    inputs=("x",),
    attrs={"dtype": Attr(REQUIRED, _dtype_attr)},
    dtype=_cast_dtype,
    cases=[("cast_float16", [(N, 4, 9, 9)], {"dtype": "float16"}, {})],
)
class Cast:
    infer = staticmethod(same_shape)
    reference = staticmethod(lambda x, *, dtype: np.asarray(x).astype(numpy_dtype(dtype)))

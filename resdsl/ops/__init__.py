"""Every op's definition, one family a module: attributes with their normalisers, shape and
dtype rules, the NumPy reference, the MAC count and the op's test cases.

The references are the meaning of the IR: every backend is tested against them.
They compute in the input's dtype (float32) except where accuracy needs more.
Importing this package registers every op in ``resdsl.registry.OPS``; adding an op
is one ``@register`` entry here plus one lowering in each backend's table.
"""

from __future__ import annotations

from . import (  # noqa: F401  (registers)
    activation,
    cast,
    conv,
    dense,
    elementwise,
    layout,
    norm,
    pool,
    quant,
    reduce,
    resample,
    sources,
)
from .common import ACTIVATIONS
from .conv import activate, conv2d_ref

__all__ = ["ACTIVATIONS", "activate", "conv2d_ref"]

"""The DSL: functions that append ops to the model being built.

A model function decorated with ``@resdsl.model`` runs once per build; each
call here records the user's file and line, so every later error can name it.
Layer functions create their parameters (named after the current scope) with a
deterministic initialisation, so two builds of one model are identical. Past the
input and the sizes that define a layer, arguments are keyword-only, and PyTorch's
spellings (``dim=``, ``padding="same"``, ``ceil_mode=``) are accepted where they mean
the same thing.
"""

from __future__ import annotations

import difflib

from .builder import Builder, building, current, scope
from .layers import (
    BatchNorm2d,
    Conv2d,
    Embedding,
    Layer,
    LayerNorm,
    Linear,
    batch_norm,
    conv2d,
    conv_transpose2d,
    embedding,
    group_norm,
    layer_norm,
    linear,
    parameter,
)
from .resample import interpolate, upsample
from .tensor import (
    Tensor,
    adaptive_avg_pool2d,
    add,
    avg_pool2d,
    cat,
    chunk,
    clamp,
    clip,
    concat,
    constant,
    div,
    dropout,
    elu,
    flatten,
    gelu,
    global_avg_pool,
    hardsigmoid,
    hardswish,
    identity,
    input,
    leaky_relu,
    matmul,
    max,
    max_pool2d,
    mean,
    mul,
    output,
    pad,
    permute,
    pow,
    relu,
    relu6,
    reshape,
    sigmoid,
    silu,
    softmax,
    split,
    stochastic_depth,
    sub,
    sum,
    swapaxes,
    tanh,
    transpose,
)

__all__ = [
    "BatchNorm2d",
    "Builder",
    "Conv2d",
    "Embedding",
    "Layer",
    "LayerNorm",
    "Linear",
    "Tensor",
    "adaptive_avg_pool2d",
    "add",
    "avg_pool2d",
    "batch_norm",
    "building",
    "cat",
    "chunk",
    "clamp",
    "clip",
    "concat",
    "constant",
    "conv2d",
    "conv_transpose2d",
    "current",
    "div",
    "dropout",
    "elu",
    "embedding",
    "flatten",
    "gelu",
    "global_avg_pool",
    "group_norm",
    "hardsigmoid",
    "hardswish",
    "identity",
    "input",
    "interpolate",
    "layer_norm",
    "leaky_relu",
    "linear",
    "matmul",
    "max",
    "max_pool2d",
    "mean",
    "mul",
    "output",
    "pad",
    "parameter",
    "permute",
    "pow",
    "relu",
    "relu6",
    "reshape",
    "scope",
    "sigmoid",
    "silu",
    "softmax",
    "split",
    "stochastic_depth",
    "sub",
    "sum",
    "swapaxes",
    "tanh",
    "transpose",
    "upsample",
]


def __getattr__(name: str):
    """``nn.X`` for an unknown X: say so with the closest names, not a bare AttributeError."""
    if name.startswith("__"):
        raise AttributeError(name)
    close = difflib.get_close_matches(name, [n for n in __all__ if n[0].islower()], n=3)
    hint = f"; the closest are {', '.join(close)}" if close else ""
    raise AttributeError(f"resdsl.nn has no {name!r}{hint} (the README lists them all)")

"""Normalisations: inference batch norm, layer norm."""

from __future__ import annotations

import numpy as np

from ..registry import ShapeError, register
from ..shapes import fmt
from .common import N, per_element


@register(
    "batch_norm",
    "Inference batch norm over axis 1: (x - mean) / sqrt(var + eps) * scale + bias.",
    inputs=("x", "scale", "bias", "mean", "var"),
    attrs={"eps": 1e-5},
    macs=per_element,
    cases=[
        (
            "batch_norm",
            [(N, 4, 9, 9)],
            {"eps": 1e-3},
            {"s": (4,), "b": (4,), "m": (4,), "v": np.random.default_rng(0).uniform(0.5, 2, 4).astype(np.float32)},
        )
    ],
)
class BatchNorm:
    @staticmethod
    def infer(shapes, a):
        x = shapes[0]
        if len(x) < 2:
            raise ShapeError(f"batch_norm expects at least rank 2, got {fmt(x)}")
        for s in shapes[1:]:
            if tuple(s) != (x[1],):
                raise ShapeError(f"batch_norm: statistics must have shape ({x[1]},), got {fmt(s)}")
        return x

    @staticmethod
    def reference(x, scale, bias, mean, var, *, eps):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        inv = (scale / np.sqrt(var.astype(np.float64) + eps)).astype(x.dtype)
        return ((x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)).astype(x.dtype)


@register(
    "layer_norm",
    "Layer norm over the last axis with scale and bias.",
    inputs=("x", "scale", "bias"),
    attrs={"eps": 1e-5},
    macs=per_element,
    cases=[("layer_norm", [(N, 5, 8)], {}, {"s": (8,), "b": (8,)})],
)
class LayerNorm:
    @staticmethod
    def infer(shapes, a):
        x = shapes[0]
        for s in shapes[1:]:
            if tuple(s) != (x[-1],):
                raise ShapeError(f"layer_norm: scale and bias must have shape ({x[-1]},), got {fmt(s)}")
        return x

    @staticmethod
    def reference(x, scale, bias, *, eps):
        x64 = x.astype(np.float64)
        mu = x64.mean(-1, keepdims=True)
        var = ((x64 - mu) ** 2).mean(-1, keepdims=True)
        return ((x64 - mu) / np.sqrt(var + eps) * scale + bias).astype(x.dtype)

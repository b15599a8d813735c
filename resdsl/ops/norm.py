"""Normalisations: inference batch norm, layer norm."""

from __future__ import annotations

import numpy as np

from ..registry import REQUIRED, Attr, ShapeError, register
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


def _layer_norm_axis(value) -> int:
    if value not in (-1, 1):
        raise ValueError("must be -1 (the last axis) or 1 (the channels)")
    return int(value)


def _num_groups(value) -> int:
    if isinstance(value, bool) or int(value) != value or value <= 0:
        raise ValueError("must be a positive integer")
    return int(value)


@register(
    "layer_norm",
    "Layer norm over one axis with scale and bias: the last (torch.nn.LayerNorm) or the channels, "
    "axis 1 (ConvNeXt's LayerNorm2d).",
    inputs=("x", "scale", "bias"),
    attrs={"eps": 1e-5, "axis": Attr(-1, _layer_norm_axis)},
    macs=per_element,
    cases=[
        ("layer_norm", [(N, 5, 8)], {}, {"s": (8,), "b": (8,)}),
        ("layer_norm_channels", [(N, 6, 5, 4)], {"axis": 1}, {"s": (6,), "b": (6,)}),
    ],
)
class LayerNorm:
    @staticmethod
    def infer(shapes, a):
        x, axis = shapes[0], a["axis"]
        if axis == 1 and len(x) < 3:
            raise ShapeError(f"layer_norm over the channels (axis=1) needs rank >= 3, got {fmt(x)}")
        for s in shapes[1:]:
            if tuple(s) != (x[axis],):
                raise ShapeError(f"layer_norm: scale and bias must have shape ({x[axis]},), got {fmt(s)}")
        return x

    @staticmethod
    def reference(x, scale, bias, *, eps, axis=-1):
        x64 = x.astype(np.float64)
        mu = x64.mean(axis, keepdims=True)
        var = ((x64 - mu) ** 2).mean(axis, keepdims=True)
        shape = [1] * x.ndim
        shape[axis] = -1
        return ((x64 - mu) / np.sqrt(var + eps) * scale.reshape(shape) + bias.reshape(shape)).astype(x.dtype)


@register(
    "group_norm",
    "Group norm (torch.nn.GroupNorm): statistics over each group of channels and the spatial axes, "
    "then a per-channel scale and bias.",
    inputs=("x", "scale", "bias"),
    attrs={"num_groups": Attr(REQUIRED, _num_groups), "eps": 1e-5},
    macs=per_element,
    cases=[("group_norm", [(N, 6, 5, 4)], {"num_groups": 3}, {"s": (6,), "b": (6,)})],
)
class GroupNorm:
    @staticmethod
    def infer(shapes, a):
        x = shapes[0]
        if len(x) < 2 or x[1] % a["num_groups"]:
            raise ShapeError(f"group_norm: {fmt(x)} has channels that do not divide into {a['num_groups']} groups")
        for s in shapes[1:]:
            if tuple(s) != (x[1],):
                raise ShapeError(f"group_norm: scale and bias must have shape ({x[1]},), got {fmt(s)}")
        return x

    @staticmethod
    def reference(x, scale, bias, *, num_groups, eps):
        n = x.shape[0]
        g = x.astype(np.float64).reshape(n, num_groups, -1)
        mu = g.mean(-1, keepdims=True)
        var = ((g - mu) ** 2).mean(-1, keepdims=True)
        y = ((g - mu) / np.sqrt(var + eps)).reshape(x.shape)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (y * scale.reshape(shape) + bias.reshape(shape)).astype(x.dtype)

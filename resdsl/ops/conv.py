"""Convolutions: conv2d and the fused conv + residual + activation that ONNX Runtime runs as FusedConv."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..registry import OPS, Attr, ShapeError, register
from ..shapes import Shape, fmt, numel, pair
from .cast import widen
from .common import N, activation, int_attr, pair_attr, rank, window_out


def _conv_shape(shapes, a, what="conv2d"):
    x, w = shapes[0], shapes[1]
    rank(x, 4, what)
    rank(w, 4, f"{what} weight")
    n, c, h, wd = x
    o, cg, kh, kw = w
    g = a["groups"]
    if c % g or o % g:
        raise ShapeError(f"{what}: channels in {c} and out {o} must both divide by groups={g}")
    if cg * g != c:
        raise ShapeError(f"{what}: weight {fmt(w)} expects {cg * g} input channels, input {fmt(x)} has {c}")
    if len(shapes) > 2 and shapes[2] is not None and tuple(shapes[2]) != (o,):
        raise ShapeError(f"{what}: bias must have shape ({o},), got {fmt(shapes[2])}")
    (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    return (n, o, window_out(h, kh, sh, ph, dh, what), window_out(wd, kw, sw, pw, dw, what))


def conv2d_ref(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    out_dtype = x.dtype
    x, w, b = widen(x, w, b)  # float16/bfloat16 accumulate in float32 and round once, as kernels do
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # N, C, Ho, Wo, kh, kw
    ho, wo = win.shape[2], win.shape[3]
    if groups == 1:
        out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    else:
        win = win.reshape(n, groups, cg, ho, wo, kh, kw)
        wg = w.reshape(groups, o // groups, cg, kh, kw)
        out = np.einsum("ngchwij,gocij->ngohw", win, wg, optimize=True).reshape(n, o, ho, wo)
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(out, dtype=out_dtype)


def conv_macs(out: Shape, ins: list[Shape], a: dict) -> int:
    _, cin_per_group, kh, kw = ins[1]
    return numel(out) * cin_per_group * kh * kw


CONV_ATTRS = {"stride": pair_attr(1), "padding": pair_attr(0), "dilation": pair_attr(1), "groups": int_attr(1)}
X4 = (N, 4, 9, 9)


@register(
    "conv2d",
    "2-D convolution, NCHW, weight (O, C/groups, kh, kw).",
    inputs=("x", "weight", "bias"),
    attrs=CONV_ATTRS,
    optional_inputs=1,
    macs=conv_macs,
    cases=[
        ("conv2d", [X4], {"stride": 2, "padding": 1}, {"w": (6, 4, 3, 3), "b": (6,)}),
        ("conv2d_nobias_dil", [X4], {"dilation": 2, "padding": 2}, {"w": (5, 4, 3, 3)}),
        ("conv2d_groups", [X4], {"groups": 2, "padding": 1}, {"w": (6, 2, 3, 3), "b": (6,)}),
        ("conv2d_rect", [X4], {"stride": (1, 2), "padding": (0, 1)}, {"w": (3, 4, 3, 1)}),
    ],
)
class Conv2d:
    infer = staticmethod(_conv_shape)

    @staticmethod
    def reference(x, w, b=None, **a):
        return conv2d_ref(x, w, b, **a)


def activate(y: np.ndarray, act: str) -> np.ndarray:
    """Apply a fused activation by the reference of the op of that name."""
    return y if act == "none" else OPS[act].reference(y)


@register(
    "fused_conv",
    "conv2d + optional residual z + activation, as com.microsoft.FusedConv.",
    inputs=("x", "weight", "bias", "z"),
    attrs={**CONV_ATTRS, "activation": Attr("none", activation)},
    optional_inputs=1,
    macs=conv_macs,
    cases=[
        (
            "fused_conv_relu",
            [X4, "w", "b", (N, 6, 9, 9)],
            {"padding": 1, "activation": "relu"},
            {"w": (6, 4, 3, 3), "b": (6,)},
        ),
        ("fused_conv_none", [X4], {"padding": 1}, {"w": (6, 4, 3, 3), "b": (6,)}),
        ("fused_conv_sigmoid", [X4], {"stride": 2, "activation": "sigmoid"}, {"w": (6, 4, 1, 1), "b": (6,)}),
    ],
)
class FusedConv:
    @staticmethod
    def infer(shapes, a):
        out = _conv_shape(shapes[:3], a, "fused_conv")
        if len(shapes) > 3 and tuple(shapes[3]) != out:
            raise ShapeError(f"fused_conv: residual {fmt(shapes[3])} must match the output {fmt(out)}")
        return out

    @staticmethod
    def reference(x, w, b, z=None, *, activation="none", **a):
        y = conv2d_ref(x, w, b, **a)
        if z is not None:
            y = y + z
        return activate(y, activation)


def _conv_transpose_shape(shapes, a):
    x, w = shapes[0], shapes[1]
    rank(x, 4, "conv_transpose2d")
    rank(w, 4, "conv_transpose2d weight")
    n, c, h, wd = x
    cin, og, kh, kw = w
    g = a["groups"]
    if cin != c or c % g:
        raise ShapeError(f"conv_transpose2d: weight {fmt(w)} expects {cin} input channels (divisible by groups={g})")
    if len(shapes) > 2 and tuple(shapes[2]) != (og * g,):
        raise ShapeError(f"conv_transpose2d: bias must have shape ({og * g},), got {fmt(shapes[2])}")
    (sh, sw), (ph, pw), (dh, dw), (oph, opw) = a["stride"], a["padding"], a["dilation"], a["output_padding"]
    if oph >= max(sh, dh) or opw >= max(sw, dw):
        raise ShapeError("conv_transpose2d: output_padding must be smaller than the stride or the dilation")

    def size(i, k, s, p, d, op):
        out = (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        if out <= 0:
            raise ShapeError(f"conv_transpose2d: the output would have size {out}")
        return out

    return (n, og * g, size(h, kh, sh, ph, dh, oph), size(wd, kw, sw, pw, dw, opw))


def conv_transpose2d_ref(x, w, b=None, *, stride, padding, dilation, output_padding, groups):
    """The adjoint of conv2d: every input pixel scatters its kernel-weighted values into the output."""
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw), (oph, opw) = stride, padding, dilation, output_padding
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1 + oph, (wd - 1) * sw + dw * (kw - 1) + 1 + opw
    out = np.zeros((n, og * groups, full_h + ph, full_w + pw), np.float64)
    xg = x.reshape(n, groups, c // groups, h, wd).astype(np.float64)
    wg = w.reshape(groups, c // groups, og, kh, kw).astype(np.float64)
    for i in range(kh):
        for j in range(kw):
            contrib = np.einsum("ngchw,gco->ngohw", xg, wg[:, :, :, i, j]).reshape(n, og * groups, h, wd)
            out[:, :, i * dh : i * dh + (h - 1) * sh + 1 : sh, j * dw : j * dw + (wd - 1) * sw + 1 : sw] += contrib
    out = out[:, :, ph : ph + full_h - 2 * ph, pw : pw + full_w - 2 * pw]
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(out, dtype=x.dtype)


def _conv_transpose_macs(out: Shape, ins: list[Shape], a: dict) -> int:
    cin, og, kh, kw = ins[1]
    return numel(ins[0]) * og * kh * kw


@register(
    "conv_transpose2d",
    "2-D transposed convolution (torch.nn.ConvTranspose2d), weight (C_in, C_out/groups, kh, kw)",
    inputs=("x", "weight", "bias"),
    attrs={**CONV_ATTRS, "output_padding": pair_attr(0)},
    optional_inputs=1,
    macs=_conv_transpose_macs,
    cases=[
        ("conv_transpose2d", [X4], {"stride": 2, "padding": 1, "output_padding": 1}, {"w": (4, 3, 3, 3), "b": (3,)}),
        ("conv_transpose2d_k2", [X4], {"stride": 2}, {"w": (4, 5, 2, 2)}),
        ("conv_transpose2d_groups", [X4], {"groups": 2, "padding": 1}, {"w": (4, 3, 3, 3), "b": (6,)}),
    ],
)
class ConvTranspose2d:
    infer = staticmethod(_conv_transpose_shape)
    reference = staticmethod(conv_transpose2d_ref)

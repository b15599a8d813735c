"""Definitions of every op: attributes, shape rule and NumPy reference.

The references are the meaning of the IR: every backend is tested against them.
They compute in the input's dtype (float32) except where accuracy needs more.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .registry import REQUIRED, ShapeError, register
from .shapes import Shape, broadcast, fmt, pair

ACTIVATIONS = ("none", "relu", "sigmoid")


def _pair(v) -> tuple[int, int]:
    try:
        return pair(v)
    except (TypeError, ValueError) as e:
        raise ShapeError(str(e)) from None


def _rank(shape: Shape, rank: int, what: str) -> None:
    if len(shape) != rank:
        raise ShapeError(f"{what} expects a rank-{rank} input, got shape {fmt(shape)}")


def _window_out(size, k: int, s: int, p: int, d: int, what: str, ceil: bool = False):
    if isinstance(size, str):
        return size
    span = size + 2 * p - d * (k - 1) - 1
    if span < 0:
        raise ShapeError(f"{what}: the window ({k}) is larger than the padded input ({size + 2 * p})")
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


# ---------------------------------------------------------------- sources


@register("input", "A graph input.", inputs=(), attrs={"name": REQUIRED, "shape": REQUIRED, "dtype": "float32"})
class Input:
    infer = staticmethod(lambda shapes, a: tuple(a["shape"]))
    reference = None


@register("param", "A named parameter held by the graph.", inputs=(), attrs={"name": REQUIRED, "shape": REQUIRED})
class Param:
    infer = staticmethod(lambda shapes, a: tuple(a["shape"]))
    reference = None


# ---------------------------------------------------------------- convolution


def _conv_shape(shapes, a, what="conv2d"):
    x, w = shapes[0], shapes[1]
    _rank(x, 4, what)
    _rank(w, 4, f"{what} weight")
    n, c, h, wd = x
    o, cg, kh, kw = w
    g = a["groups"]
    if c % g or o % g:
        raise ShapeError(f"{what}: channels in {c} and out {o} must both divide by groups={g}")
    if cg * g != c:
        raise ShapeError(f"{what}: weight {fmt(w)} expects {cg * g} input channels, input {fmt(x)} has {c}")
    if len(shapes) > 2 and shapes[2] is not None and tuple(shapes[2]) != (o,):
        raise ShapeError(f"{what}: bias must have shape ({o},), got {fmt(shapes[2])}")
    (sh, sw), (ph, pw), (dh, dw) = _pair(a["stride"]), _pair(a["padding"]), _pair(a["dilation"])
    return (n, o, _window_out(h, kh, sh, ph, dh, what), _window_out(wd, kw, sw, pw, dw, what))


def conv2d_ref(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
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
    return np.ascontiguousarray(out, dtype=x.dtype)


CONV_ATTRS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}


@register(
    "conv2d",
    "2-D convolution, NCHW, weight (O, C/groups, kh, kw).",
    inputs=("x", "weight", "bias"),
    attrs=CONV_ATTRS,
    optional_inputs=1,
)
class Conv2d:
    infer = staticmethod(_conv_shape)

    @staticmethod
    def reference(x, w, b=None, **a):
        return conv2d_ref(x, w, b, **a)


def activate(y: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(y, 0).astype(y.dtype)
    if activation == "sigmoid":
        return (1 / (1 + np.exp(-y))).astype(y.dtype)
    return y


@register(
    "fused_conv",
    "conv2d + optional residual z + activation, as com.microsoft.FusedConv.",
    inputs=("x", "weight", "bias", "z"),
    attrs={**CONV_ATTRS, "activation": "none"},
    optional_inputs=1,
)
class FusedConv:
    @staticmethod
    def infer(shapes, a):
        if a["activation"] not in ACTIVATIONS:
            raise ShapeError(f"fused_conv: activation must be one of {ACTIVATIONS}")
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


# ---------------------------------------------------------------- normalisation


@register(
    "batch_norm",
    "Inference batch norm over axis 1: (x - mean) / sqrt(var + eps) * scale + bias.",
    inputs=("x", "scale", "bias", "mean", "var"),
    attrs={"eps": 1e-5},
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


# ---------------------------------------------------------------- activations


def _same(shapes, a):
    return shapes[0]


_erf = np.frompyfunc(math.erf, 1, 1)


@register("relu", "max(x, 0)", inputs=("x",))
class Relu:
    infer = staticmethod(_same)
    reference = staticmethod(lambda x: np.maximum(x, 0).astype(x.dtype))


@register("sigmoid", "1 / (1 + exp(-x))", inputs=("x",))
class Sigmoid:
    infer = staticmethod(_same)
    reference = staticmethod(lambda x: (1 / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype))


@register("silu", "x * sigmoid(x)", inputs=("x",))
class Silu:
    infer = staticmethod(_same)
    reference = staticmethod(lambda x: (x / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype))


@register("gelu", "x * Phi(x), the exact (erf) form", inputs=("x",))
class Gelu:
    infer = staticmethod(_same)

    @staticmethod
    def reference(x):
        x64 = x.astype(np.float64)
        return (0.5 * x64 * (1 + _erf(x64 / math.sqrt(2)).astype(np.float64))).astype(x.dtype)


@register("identity", "x", inputs=("x",))
class Identity:
    infer = staticmethod(_same)
    reference = staticmethod(lambda x: x)


@register("softmax", "softmax along an axis", inputs=("x",), attrs={"axis": -1})
class Softmax:
    infer = staticmethod(_same)

    @staticmethod
    def reference(x, *, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


# ---------------------------------------------------------------- pooling


def _pool_shape(name):
    def infer(shapes, a):
        x = shapes[0]
        _rank(x, 4, name)
        (kh, kw), (sh, sw), (ph, pw) = _pair(a["kernel"]), _pair(a["stride"] or a["kernel"]), _pair(a["padding"])
        if 2 * ph > kh or 2 * pw > kw:
            raise ShapeError(f"{name}: padding must be at most half the kernel")
        return (x[0], x[1], _window_out(x[2], kh, sh, ph, 1, name), _window_out(x[3], kw, sw, pw, 1, name))

    return infer


def _pool_windows(x, a, fill):
    (kh, kw), (sh, sw), (ph, pw) = _pair(a["kernel"]), _pair(a["stride"] or a["kernel"]), _pair(a["padding"])
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    return sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


POOL_ATTRS = {"kernel": REQUIRED, "stride": None, "padding": 0}


@register("max_pool2d", "max over windows; padding counts as -inf", inputs=("x",), attrs=POOL_ATTRS)
class MaxPool:
    infer = staticmethod(_pool_shape("max_pool2d"))
    reference = staticmethod(lambda x, **a: _pool_windows(x, a, -np.inf).max(axis=(4, 5)).astype(x.dtype))


@register("avg_pool2d", "mean over windows; padding counts as zeros", inputs=("x",), attrs=POOL_ATTRS)
class AvgPool:
    infer = staticmethod(_pool_shape("avg_pool2d"))
    reference = staticmethod(lambda x, **a: _pool_windows(x, a, 0.0).mean(axis=(4, 5)).astype(x.dtype))


@register("global_avg_pool", "mean over H and W, keeping them as 1", inputs=("x",))
class GlobalAvgPool:
    @staticmethod
    def infer(shapes, a):
        _rank(shapes[0], 4, "global_avg_pool")
        return shapes[0][:2] + (1, 1)

    reference = staticmethod(lambda x: x.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(x.dtype))


# ---------------------------------------------------------------- dense


@register(
    "linear", "y = x W^T + b over the last axis; W is (out, in)", inputs=("x", "weight", "bias"), optional_inputs=1
)
class Linear:
    @staticmethod
    def infer(shapes, a):
        x, w = shapes[0], shapes[1]
        _rank(w, 2, "linear weight")
        if len(x) < 2 or x[-1] != w[1]:
            raise ShapeError(f"linear: input {fmt(x)} has {x[-1]} features, weight {fmt(w)} expects {w[1]}")
        if len(shapes) > 2 and tuple(shapes[2]) != (w[0],):
            raise ShapeError(f"linear: bias must have shape ({w[0]},)")
        return x[:-1] + (w[0],)

    @staticmethod
    def reference(x, w, b=None):
        y = x @ w.T
        return (y if b is None else y + b).astype(x.dtype)


@register("matmul", "batched matrix product with broadcasting", inputs=("a", "b"))
class Matmul:
    @staticmethod
    def infer(shapes, a):
        x, y = shapes
        if len(x) < 2 or len(y) < 2 or x[-1] != y[-2]:
            raise ShapeError(f"matmul: {fmt(x)} @ {fmt(y)} do not chain")
        batch = broadcast(x[:-2], y[:-2])
        if batch is None:
            raise ShapeError(f"matmul: batch dimensions of {fmt(x)} and {fmt(y)} do not broadcast")
        return batch + (x[-2], y[-1])

    reference = staticmethod(lambda a, b: np.matmul(a, b).astype(a.dtype))


# ---------------------------------------------------------------- elementwise


def _binary(name):
    def infer(shapes, a):
        out = broadcast(shapes[0], shapes[1])
        if out is None:
            raise ShapeError(f"{name}: shapes {fmt(shapes[0])} and {fmt(shapes[1])} do not broadcast")
        return out

    return infer


@register("add", "a + b with broadcasting", inputs=("a", "b"))
class Add:
    infer = staticmethod(_binary("add"))
    reference = staticmethod(lambda a, b: (a + b).astype(np.result_type(a, b)))


@register("sub", "a - b with broadcasting", inputs=("a", "b"))
class Sub:
    infer = staticmethod(_binary("sub"))
    reference = staticmethod(lambda a, b: (a - b).astype(np.result_type(a, b)))


@register("mul", "a * b with broadcasting", inputs=("a", "b"))
class Mul:
    infer = staticmethod(_binary("mul"))
    reference = staticmethod(lambda a, b: (a * b).astype(np.result_type(a, b)))


@register("sum", "the sum of all inputs (variadic add)", inputs=("x*",))
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


# ---------------------------------------------------------------- layout


@register("flatten", "collapse the axes from `axis` on into one", inputs=("x",), attrs={"axis": 1})
class Flatten:
    @staticmethod
    def infer(shapes, a):
        x, ax = shapes[0], a["axis"]
        rest = 1
        for d in x[ax:]:
            if isinstance(d, str):
                raise ShapeError("flatten cannot fold the batch dimension")
            rest *= d
        return tuple(x[:ax]) + (rest,)

    @staticmethod
    def reference(x, *, axis):
        return x.reshape(x.shape[:axis] + (-1,))


@register("reshape", "reshape; 0 copies the input's dim, -1 is inferred", inputs=("x",), attrs={"shape": REQUIRED})
class Reshape:
    @staticmethod
    def infer(shapes, a):
        x, target = shapes[0], list(a["shape"])
        out = [x[i] if d == 0 else d for i, d in enumerate(target)]
        known_in = [d for d in x if not isinstance(d, str)]
        sym_in = [d for d in x if isinstance(d, str)]
        sym_out = [d for d in out if isinstance(d, str)]
        if sym_in != sym_out:
            raise ShapeError(f"reshape must keep the batch dimension in place (use 0): {fmt(x)} -> {tuple(target)}")
        total = int(np.prod(known_in)) if known_in else 1
        known_out = int(np.prod([d for d in out if isinstance(d, int) and d != -1])) if out else 1
        if out.count(-1) > 1:
            raise ShapeError("reshape: at most one -1")
        if -1 in out:
            if known_out == 0 or total % known_out:
                raise ShapeError(f"reshape: cannot infer -1 for {fmt(x)} -> {tuple(target)}")
            out[out.index(-1)] = total // known_out
        elif known_out != total:
            raise ShapeError(f"reshape: {fmt(x)} has {total} elements per sample, {tuple(target)} has {known_out}")
        return tuple(out)

    @staticmethod
    def reference(x, *, shape):
        return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(shape)])


@register("transpose", "permute axes", inputs=("x",), attrs={"perm": REQUIRED})
class Transpose:
    @staticmethod
    def infer(shapes, a):
        x, perm = shapes[0], tuple(a["perm"])
        if sorted(perm) != list(range(len(x))):
            raise ShapeError(f"transpose: {perm} is not a permutation of {len(x)} axes")
        return tuple(x[p] for p in perm)

    reference = staticmethod(lambda x, *, perm: np.ascontiguousarray(x.transpose(perm)))


@register("concat", "join along an axis", inputs=("x*",), attrs={"axis": 1})
class Concat:
    @staticmethod
    def infer(shapes, a):
        ax = a["axis"] % len(shapes[0])
        total = 0
        for s in shapes:
            if len(s) != len(shapes[0]) or any(s[i] != shapes[0][i] for i in range(len(s)) if i != ax):
                raise ShapeError(f"concat on axis {ax}: shapes {', '.join(map(fmt, shapes))} differ elsewhere")
            if isinstance(s[ax], str):
                raise ShapeError("concat cannot join along the batch dimension")
            total += s[ax]
        return tuple(shapes[0][:ax]) + (total,) + tuple(shapes[0][ax + 1 :])

    reference = staticmethod(lambda *xs, axis: np.concatenate(xs, axis=axis))


@register(
    "pad", "zero padding; pads = (begin_0, ..., begin_k, end_0, ..., end_k)", inputs=("x",), attrs={"pads": REQUIRED}
)
class Pad:
    @staticmethod
    def infer(shapes, a):
        x, pads = shapes[0], tuple(a["pads"])
        r = len(x)
        if len(pads) != 2 * r:
            raise ShapeError(f"pad: {r}-rank input needs {2 * r} pads")
        if isinstance(x[0], str) and (pads[0] or pads[r]):
            raise ShapeError("pad cannot pad the batch dimension")
        return tuple(d if isinstance(d, str) else d + pads[i] + pads[i + r] for i, d in enumerate(x))

    @staticmethod
    def reference(x, *, pads):
        r = x.ndim
        return np.pad(x, [(pads[i], pads[i + r]) for i in range(r)])

"""Tensors and the parameter-free DSL functions: activations, arithmetic, pooling, reductions, layout.

Every function checks its arguments at the call (``check``) and records the caller's file
and line on the node it adds, so a later error names the line the user wrote. Tensors
support the operators and methods a PyTorch user reaches for (``+ - * / @ **``, unary
``-``, slicing, ``.reshape``/``.view``/``.permute``/``.transpose``/``.flatten``/``.mean``).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import residual
from ..errors import ResdslError, caller_loc
from ..ir import CONST, WEIGHT
from ..shapes import BATCH, Shape, broadcast, fmt
from . import check
from .builder import Builder, current
from .check import dsl

DTYPES = ("float32", "int64")


class Tensor:
    """A value in the model being built."""

    __slots__ = ("builder", "id")

    def __init__(self, builder: Builder, nid: int) -> None:
        self.builder = builder
        self.id = nid

    @property
    def shape(self) -> Shape:
        return self.builder.graph.node(self.id).shape

    @property
    def dtype(self) -> str:
        return self.builder.graph.node(self.id).dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def size(self, axis: int | None = None):
        return self.shape if axis is None else self.shape[check.axis("size", "dim", axis, len(self.shape))]

    def __repr__(self) -> str:
        n = self.builder.graph.node(self.id)
        return f"Tensor({n.name}: {fmt(n.shape)})"

    # arithmetic
    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __truediv__(self, other):
        return div(self, other)

    def __rtruediv__(self, other):
        return div(other, self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __neg__(self):
        return mul(self, -1.0)

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        return pow(self, exponent)  # noqa: A001

    def __getitem__(self, index):
        return getitem(self, index)

    # methods
    def reshape(self, *shape):
        return reshape(self, _shape_args(shape))

    def view(self, *shape):
        return reshape(self, _shape_args(shape))

    def permute(self, *dims):
        return transpose(self, _shape_args(dims))

    def transpose(self, dim0: int, dim1: int):
        return swapaxes(self, dim0, dim1)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        return flatten(self, start_dim, end_dim=end_dim)

    def mean(self, dim=None, keepdim: bool = False):
        return mean(self, dim, keepdim=keepdim)

    def sum(self, dim=None, keepdim: bool = False):
        return sum(self, dim, keepdim=keepdim)  # noqa: A001

    def max(self, dim=None, keepdim: bool = False):
        return max(self, dim, keepdim=keepdim)  # noqa: A001

    def relu(self):
        return relu(self)

    def sigmoid(self):
        return sigmoid(self)

    def softmax(self, dim: int = -1):
        return softmax(self, dim=dim)

    def chunk(self, chunks: int, dim: int = 0):
        return chunk(self, chunks, dim)

    def split(self, split_size, dim: int = 0):
        return split(self, split_size, dim)


def _shape_args(shape: tuple) -> tuple:
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple | list) else tuple(shape)


def _tensor(x: Any, what: str) -> Tensor:
    b = current()
    if isinstance(x, Tensor):
        if x.builder is not b:
            raise ResdslError(
                f"{what}: {x!r} belongs to another model ({x.builder.graph.name!r})",
                caller_loc(),
                "build each model from its own nn.input",
            )
        return x
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ResdslError(f"{what}: expected a tensor or a number, got {type(x).__name__}", caller_loc())
    return constant(float(x))


def _node(
    op: str,
    inputs: Sequence[Tensor],
    attrs: dict | None = None,
    name: str | None = None,
    shape: Shape | None = None,
    full: str | None = None,
) -> Tensor:
    b = current()
    nid = b.graph.add_node(
        op,
        [t.id for t in inputs],
        attrs,
        name=full or (b.qualify(name) if name else b.auto_name(op)),
        loc=caller_loc(),
        shape=shape,
    )
    return Tensor(b, nid)


def _param(layer: str, pname: str, value: np.ndarray, kind: str = WEIGHT) -> Tensor:
    b = current()
    return Tensor(b, b.graph.add_param(f"{layer}.{pname}", value, kind, caller_loc()))


def _layer_name(fn: str, name: str | None, op: str) -> str:
    b = current()
    name = check.name(fn, name)
    return b.qualify(name) if name else b.auto_name(op)


# ---------------------------------------------------------------- structure


@dsl
def input(name: str, shape: Sequence[int], *, dtype: str = "float32") -> Tensor:  # noqa: A001 - the DSL's vocabulary
    """A graph input; the batch dimension N is implicit and comes first. ``dtype`` float32 or int64 (indices)."""
    b = current()
    if not isinstance(name, str) or not name:
        raise check.fail("input", f"name={name!r} must be a non-empty string")
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        raise check.fail("input", f"shape={shape!r} must be a sequence of ints, without the batch dimension")
    if any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape):
        raise ResdslError(f"nn.input: shape {tuple(shape)} must hold positive ints", caller_loc())
    check.choice("input", "dtype", dtype, DTYPES)
    if any(b.graph.node(i).attrs["name"] == name for i in b.graph.inputs):
        raise check.fail("input", f"an input named {name!r} is declared twice", "give each input its own name")
    return Tensor(b, b.graph.add_input(name, (BATCH,) + tuple(shape), caller_loc(), dtype=dtype))


@dsl
def output(name: str, x: Tensor) -> Tensor:
    b = current()
    x = _tensor(x, "nn.output")
    if not isinstance(name, str) or not name:
        raise check.fail("output", f"name={name!r} must be a non-empty string")
    if any(n == name for n, _ in b.graph.outputs):
        raise ResdslError(f"output {name!r} is declared twice", caller_loc())
    if any(b.graph.node(i).attrs["name"] == name for i in b.graph.inputs):
        raise check.fail("output", f"output {name!r} is named like an input", "give outputs names no input has")
    b.graph.set_output(name, x.id)
    return x


@dsl
def constant(value: float | np.ndarray, *, name: str | None = None) -> Tensor:
    b = current()
    pname = _layer_name("constant", name, "const")
    nid = b.graph.add_param(pname, np.asarray(value, dtype=np.float32), CONST, caller_loc())
    return Tensor(b, nid)


# ---------------------------------------------------------------- activations


def _unary(op: str, doc: str):
    def fn(x: Tensor, *, name: str | None = None) -> Tensor:
        return _node(op, [_tensor(x, f"nn.{op}")], name=check.name(op, name))

    fn.__name__ = op
    fn.__qualname__ = op
    fn.__doc__ = doc
    return dsl(fn)


relu = _unary("relu", "max(x, 0)")
gelu = _unary("gelu", "x * Phi(x), the exact (erf) form")
sigmoid = _unary("sigmoid", "1 / (1 + exp(-x))")
silu = _unary("silu", "x * sigmoid(x) (torch.nn.SiLU, EfficientNet's swish)")
tanh = _unary("tanh", "tanh(x)")
hardswish = _unary("hardswish", "x * relu6(x + 3) / 6 (MobileNetV3)")
hardsigmoid = _unary("hardsigmoid", "relu6(x + 3) / 6 (MobileNetV3's squeeze-excitation gate)")
identity = _unary("identity", "x")
global_avg_pool = _unary("global_avg_pool", "mean over H and W, keeping them as 1")


@dsl
def clip(x: Tensor, min: float, max: float, *, name: str | None = None) -> Tensor:  # noqa: A002
    """min(max(x, min), max), as torch.clamp."""
    lo, hi = check.number("clip", "min", min), check.number("clip", "max", max)
    if lo > hi:
        raise check.fail("clip", f"min={lo} is above max={hi}")
    return _node("clip", [_tensor(x, "nn.clip")], {"min": lo, "max": hi}, name=check.name("clip", name))


clamp = clip


@dsl
def relu6(x: Tensor, *, name: str | None = None) -> Tensor:
    """min(max(x, 0), 6) (MobileNetV2)."""
    return _node("clip", [_tensor(x, "nn.relu6")], {"min": 0.0, "max": 6.0}, name=check.name("relu6", name) or None)


@dsl
def leaky_relu(x: Tensor, negative_slope: float = 0.01, *, name: str | None = None) -> Tensor:
    slope = check.number("leaky_relu", "negative_slope", negative_slope)
    return _node("leaky_relu", [_tensor(x, "nn.leaky_relu")], {"negative_slope": slope}, name=name)


@dsl
def elu(x: Tensor, alpha: float = 1.0, *, name: str | None = None) -> Tensor:
    return _node("elu", [_tensor(x, "nn.elu")], {"alpha": check.number("elu", "alpha", alpha)}, name=name)


def _rate(fn: str, p: Any) -> float:
    p = check.number(fn, "p", p)
    if not 0.0 <= p < 1.0:
        raise check.fail(fn, f"p={p} must be in [0, 1)")
    return p


@dsl
def dropout(x: Tensor, p: float = 0.5, *, name: str | None = None) -> Tensor:
    """Identity at inference; the rate is recorded (a PyTorch export applies it in training)."""
    return _node("dropout", [_tensor(x, "nn.dropout")], {"p": _rate("dropout", p)}, name=name)


@dsl
def stochastic_depth(x: Tensor, p: float, *, mode: str = "row", name: str | None = None) -> Tensor:
    """Drop a residual branch with probability p in training (torchvision.ops.stochastic_depth); identity here."""
    check.choice("stochastic_depth", "mode", mode, ("row", "batch"))
    return _node(
        "stochastic_depth",
        [_tensor(x, "nn.stochastic_depth")],
        {"p": _rate("stochastic_depth", p), "mode": mode},
        name=name,
    )


@dsl
def softmax(x: Tensor, axis: int = -1, *, dim: int | None = None, name: str | None = None) -> Tensor:
    x = _tensor(x, "nn.softmax")
    given = dim if dim is not None else axis
    ax = check.axis("softmax", "dim" if dim is not None else "axis", given, len(x.shape))
    if isinstance(x.shape[ax], str):
        raise check.fail("softmax", "cannot normalise over the batch dimension")
    return _node("softmax", [x], {"axis": given}, name=name)


# ---------------------------------------------------------------- pooling


def _pool(op: str, x, kernel_size, stride, padding, ceil_mode, name, extra=None) -> Tensor:
    x = _tensor(x, f"nn.{op}")
    if len(x.shape) != 4:
        raise check.fail(op, f"expects an NCHW input, got shape {fmt(x.shape)}")
    k = check.pair(op, "kernel_size", kernel_size, 1)
    s = None if stride is None else check.pair(op, "stride", stride, 1)
    p = check.pair(op, "padding", padding, 0)
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        raise check.fail(op, f"padding={padding} must be at most half the kernel {k}")
    for size, kk, pp in zip(x.shape[2:], k, p):
        if size + 2 * pp < kk:
            raise check.fail(op, f"the kernel {k} is larger than the padded input {fmt(x.shape[2:])}")
    attrs = {"kernel": k, "stride": s, "padding": p, "ceil_mode": bool(ceil_mode), **(extra or {})}
    return _node(op, [x], attrs, name=check.name(op, name))


@dsl
def max_pool2d(
    x: Tensor, kernel_size, stride=None, padding=0, *, ceil_mode: bool = False, name: str | None = None
) -> Tensor:
    return _pool("max_pool2d", x, kernel_size, stride, padding, ceil_mode, name)


@dsl
def avg_pool2d(
    x: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    *,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    name: str | None = None,
) -> Tensor:
    extra = {"count_include_pad": bool(count_include_pad)}
    return _pool("avg_pool2d", x, kernel_size, stride, padding, ceil_mode, name, extra)


@dsl
def adaptive_avg_pool2d(x: Tensor, output_size, *, name: str | None = None) -> Tensor:
    """torch.nn.AdaptiveAvgPool2d where the bins are equal (output 1, or a divisor of the input)."""
    x = _tensor(x, "nn.adaptive_avg_pool2d")
    if len(x.shape) != 4:
        raise check.fail("adaptive_avg_pool2d", f"expects an NCHW input, got shape {fmt(x.shape)}")
    out = check.pair("adaptive_avg_pool2d", "output_size", output_size, 1)
    if out == (1, 1):
        return _node("global_avg_pool", [x], name=check.name("adaptive_avg_pool2d", name))
    h, w = x.shape[2:]
    if h % out[0] or w % out[1]:
        raise check.fail(
            "adaptive_avg_pool2d",
            f"output {out} does not divide the input {h}x{w} into equal bins",
            "resdsl supports output 1 or sizes that divide the input",
        )
    k = (h // out[0], w // out[1])
    return _pool("avg_pool2d", x, k, k, 0, False, name)


# ---------------------------------------------------------------- reductions


def _reduce(op: str, fn: str, x, dim, keepdim, name) -> Tensor:
    x = _tensor(x, f"nn.{fn}")
    if dim is None:
        axes = tuple(range(1, len(x.shape)))  # all but the batch: resdsl never reduces over samples
    else:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        axes = tuple(check.axis(fn, "dim", d, len(x.shape)) for d in dims)
        if len(set(axes)) != len(axes):
            raise check.fail(fn, f"dim={dim} names an axis twice")
    if any(isinstance(x.shape[a], str) for a in axes):
        raise check.fail(fn, "cannot reduce over the batch dimension")
    return _node(op, [x], {"axes": axes, "keepdim": bool(keepdim)}, name=check.name(fn, name))


@dsl
def mean(x: Tensor, dim=None, keepdim: bool = False, *, name: str | None = None) -> Tensor:
    return _reduce("reduce_mean", "mean", x, dim, keepdim, name)


@dsl
def sum(x: Tensor, dim=None, keepdim: bool = False, *, name: str | None = None) -> Tensor:  # noqa: A001
    return _reduce("reduce_sum", "sum", x, dim, keepdim, name)


@dsl
def max(x: Tensor, dim=None, keepdim: bool = False, *, name: str | None = None) -> Tensor:  # noqa: A001
    return _reduce("reduce_max", "max", x, dim, keepdim, name)


# ---------------------------------------------------------------- layout


@dsl
def flatten(x: Tensor, start_dim: int = 1, *, end_dim: int = -1, axis: int | None = None, name=None) -> Tensor:
    """Collapse the axes start_dim..end_dim into one (torch.flatten); ``axis=`` is resdsl's older spelling."""
    x = _tensor(x, "nn.flatten")
    r = len(x.shape)
    start = check.axis("flatten", "start_dim", axis if axis is not None else start_dim, r)
    end = check.axis("flatten", "end_dim", end_dim, r)
    if start == 0 and isinstance(x.shape[0], str):
        raise check.fail("flatten", "cannot fold the batch dimension", "flatten from start_dim=1")
    if end < start:
        raise check.fail("flatten", f"end_dim={end_dim} comes before start_dim={start_dim}")
    if end == r - 1:
        return _node("flatten", [x], {"axis": start}, name=check.name("flatten", name))
    folded = math.prod(x.shape[start : end + 1])
    target = [0 if isinstance(d, str) else d for d in x.shape[:start]] + [folded] + list(x.shape[end + 1 :])
    return _node("reshape", [x], {"shape": tuple(target)}, name=check.name("flatten", name))


@dsl
def reshape(x: Tensor, shape: Sequence[int | str], *, name: str | None = None) -> Tensor:
    """Reshape; write the batch dimension as "N" (or 0 to copy an axis), and -1 to infer one."""
    x = _tensor(x, "nn.reshape")
    target = []
    for d in shape:
        if d == BATCH:
            target.append(0)
        elif isinstance(d, bool) or not isinstance(d, int) or d < -1:
            raise check.fail("reshape", f"shape entry {d!r} must be a positive int, 0, -1 or 'N'")
        else:
            target.append(d)
    if target and target[0] == -1 and isinstance(x.shape[0], str):
        target[0] = 0  # PyTorch's x.view(-1, ...) over a batch: the -1 is the batch, kept in place
    return _node("reshape", [x], {"shape": tuple(target)}, name=check.name("reshape", name))


@dsl
def transpose(x: Tensor, perm: Sequence[int], *, name: str | None = None) -> Tensor:
    """Permute axes (torch.permute)."""
    x = _tensor(x, "nn.transpose")
    r = len(x.shape)
    axes = tuple(check.axis("transpose", "perm", p, r) for p in perm)
    if sorted(axes) != list(range(r)):
        raise check.fail("transpose", f"perm={tuple(perm)} is not a permutation of {r} axes")
    if axes[0] != 0 and isinstance(x.shape[0], str):
        raise check.fail("transpose", "the batch dimension must stay first")
    return _node("transpose", [x], {"perm": axes}, name=check.name("transpose", name))


permute = transpose


@dsl
def swapaxes(x: Tensor, dim0: int, dim1: int, *, name: str | None = None) -> Tensor:
    """Swap two axes (torch.transpose(x, dim0, dim1))."""
    x = _tensor(x, "nn.swapaxes")
    r = len(x.shape)
    a, b = check.axis("transpose", "dim0", dim0, r), check.axis("transpose", "dim1", dim1, r)
    perm = list(range(r))
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm, name=name)


@dsl
def matmul(a: Tensor, b: Tensor, *, name: str | None = None) -> Tensor:
    a, b = _tensor(a, "nn.matmul"), _tensor(b, "nn.matmul")
    if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[-1] != b.shape[-2]:
        raise check.fail("matmul", f"{fmt(a.shape)} @ {fmt(b.shape)} do not chain", "the inner sizes must agree")
    return _node("matmul", [a, b], name=check.name("matmul", name))


@dsl
def concat(xs: Sequence[Tensor], axis: int = 1, *, dim: int | None = None, name: str | None = None) -> Tensor:
    if not isinstance(xs, Sequence) or not xs:
        raise check.fail("concat", "expects a non-empty list of tensors")
    ts = [_tensor(x, "nn.concat") for x in xs]
    ax = check.axis("concat", "dim" if dim is not None else "axis", dim if dim is not None else axis, len(ts[0].shape))
    return _node("concat", ts, {"axis": ax}, name=check.name("concat", name))


cat = concat


@dsl
def pad(x: Tensor, pads: Sequence[int], *, name: str | None = None) -> Tensor:
    x = _tensor(x, "nn.pad")
    if any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in pads):
        raise check.fail("pad", f"pads={tuple(pads)} must be non-negative ints")
    return _node("pad", [x], {"pads": tuple(pads)}, name=check.name("pad", name))


def _slice(x: Tensor, axis: int, start: int, end: int, step: int, name=None) -> Tensor:
    return _node("slice", [x], {"axis": axis, "start": start, "end": end, "step": step}, name=name)


@dsl
def chunk(x: Tensor, chunks: int, dim: int = 0) -> list[Tensor]:
    """Split into ``chunks`` pieces along ``dim`` (torch.chunk: the last may be smaller)."""
    x = _tensor(x, "nn.chunk")
    check.integer("chunk", "chunks", chunks, 1)
    ax = check.axis("chunk", "dim", dim, len(x.shape))
    if isinstance(x.shape[ax], str):
        raise check.fail("chunk", "cannot split the batch dimension", "split along dim=1 or later")
    size = -(-x.shape[ax] // chunks)
    return split(x, size, ax)


@dsl
def split(x: Tensor, split_size, dim: int = 0) -> list[Tensor]:
    """Split along ``dim`` into pieces of ``split_size`` (an int) or of the listed sizes (torch.split)."""
    x = _tensor(x, "nn.split")
    ax = check.axis("split", "dim", dim, len(x.shape))
    n = x.shape[ax]
    if isinstance(n, str):
        raise check.fail("split", "cannot split the batch dimension", "split along dim=1 or later")
    if isinstance(split_size, int) and not isinstance(split_size, bool):
        check.integer("split", "split_size", split_size, 1)
        sizes = [split_size] * (n // split_size) + ([n % split_size] if n % split_size else [])
    else:
        sizes = [check.integer("split", "split_size", s, 1) for s in split_size]
        if builtins.sum(sizes) != n:
            raise check.fail("split", f"sizes {sizes} add up to {builtins.sum(sizes)}, not the axis' {n}")
    out, start = [], 0
    for s in sizes:
        out.append(_slice(x, ax, start, start + s, 1))
        start += s
    return out


def getitem(x: Tensor, index) -> Tensor:
    """``x[...]`` with ints, slices (positive steps), ``...`` and ``None``: slices, then a reshape."""
    index = index if isinstance(index, tuple) else (index,)
    if builtins.sum(1 for i in index if i is Ellipsis) > 1:
        raise check.fail("Tensor[]", "an index can hold one ... only")
    r = len(x.shape)
    used = builtins.sum(1 for i in index if i is not None and i is not Ellipsis)
    if used > r:
        raise check.fail("Tensor[]", f"too many indices for a rank-{r} tensor {fmt(x.shape)}")
    expanded = []
    for i in index:
        if i is Ellipsis:
            expanded.extend([slice(None)] * (r - used))
        else:
            expanded.append(i)
    expanded.extend([slice(None)] * (r - builtins.sum(1 for i in expanded if i is not None)))
    out_shape: list = []
    axis = 0
    y = x
    for i in expanded:
        if i is None:
            out_shape.append(1)
            continue
        size = x.shape[axis]
        if isinstance(i, slice):
            if i == slice(None):
                out_shape.append(size)
            else:
                if isinstance(size, str):
                    raise check.fail("Tensor[]", "cannot slice the batch dimension")
                start, stop, step = i.indices(size)
                if step <= 0:
                    raise check.fail("Tensor[]", "slices need a positive step")
                if stop <= start:
                    raise check.fail("Tensor[]", f"the slice {i} of an axis of {size} is empty")
                y = _slice(y, axis, start, stop, step)
                out_shape.append(y.shape[axis])
        elif isinstance(i, int) and not isinstance(i, bool):
            if isinstance(size, str):
                raise check.fail("Tensor[]", "cannot index the batch dimension")
            if not -size <= i < size:
                raise check.fail("Tensor[]", f"index {i} is out of range for an axis of {size}")
            y = _slice(y, axis, i % size, i % size + 1, 1)
        else:
            raise check.fail("Tensor[]", f"unsupported index {i!r}", "use ints, slices, ... and None")
        axis += 1
    if tuple(out_shape) == y.shape:
        return y
    return reshape(y, [0 if isinstance(d, str) else d for d in out_shape])


# ---------------------------------------------------------------- arithmetic


@dsl
def mul(a: Tensor | float, b: Tensor | float, *, name: str | None = None) -> Tensor:
    return _node("mul", [_tensor(a, "nn.mul"), _tensor(b, "nn.mul")], name=name)


@dsl
def sub(a: Tensor | float, b: Tensor | float, *, name: str | None = None) -> Tensor:
    return _node("sub", [_tensor(a, "nn.sub"), _tensor(b, "nn.sub")], name=name)


@dsl
def div(a: Tensor | float, b: Tensor | float, *, name: str | None = None) -> Tensor:
    """a / b; dividing by a number multiplies by its inverse (as before), by a tensor is a div op."""
    if isinstance(b, int | float) and not isinstance(b, bool):
        if b == 0:
            raise check.fail("div", "division by zero")
        return mul(a, 1.0 / b, name=name)
    return _node("div", [_tensor(a, "nn.div"), _tensor(b, "nn.div")], name=name)


@dsl
def pow(x: Tensor, exponent: float, *, name: str | None = None) -> Tensor:  # noqa: A001
    """x ** exponent for a number exponent; x ** 1 is x."""
    e = check.number("pow", "exponent", exponent)
    x = _tensor(x, "nn.pow")
    if e == 1.0:
        return x
    return _node("pow", [x], {"exponent": e}, name=name)


@dsl
def add(a: Tensor | float, b: Tensor | float, *, name: str | None = None) -> Tensor:
    """a + b. When one operand feeds the other and their shapes differ in any way (broadcasting
    included), this is a residual join whose shortcut needs a projection: the result takes the
    branch's shape, and the shortcuts pass inserts the projection (see ``resdsl.residual``)."""
    a, b_ = _tensor(a, "nn.add"), _tensor(b, "nn.add")
    g = current().graph
    join = residual.pending_join(g, a.id, b_.id)
    if join is None:
        if broadcast(a.shape, b_.shape) is not None:
            return _node("add", [a, b_], name=name)
        na, nb = g.node(a.id), g.node(b_.id)
        raise ResdslError(
            f"cannot add {na.name} {fmt(na.shape)} (from {na.loc}) and {nb.name} {fmt(nb.shape)} (from {nb.loc}): "
            "the shapes differ and neither operand feeds the other, so no shortcut projection applies",
            caller_loc(),
            "make the shapes equal, or add a tensor to a branch computed from it",
        )
    why = residual.plan(g, *join)
    if isinstance(why, str):
        raise ResdslError(f"residual add cannot be projected: {why}", caller_loc())
    return _node("add", [a, b_], name=name, shape=g.node(join[1]).shape)

"""The DSL: functions that append ops to the model being built.

A model function decorated with ``@resdsl.model`` runs once per build; each
call here records the user's file and line, so every later error can name it.
Layer functions create their parameters (named after the current scope) with a
deterministic initialisation, so two builds of one model are identical.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import residual
from .errors import ResdslError, caller_loc
from .ir import BUFFER, CONST, WEIGHT, Graph
from .shapes import BATCH, Shape, broadcast, fmt

_current: list[Builder] = []


class Builder:
    """The state of one model build: the graph, the scope stack and the seed."""

    def __init__(self, name: str, seed: int = 0) -> None:
        self.graph = Graph(name)
        self.seed = seed
        self.scopes: list[str] = []
        self.auto: dict[str, int] = {}

    def qualify(self, name: str) -> str:
        return ".".join(self.scopes + [name])

    def auto_name(self, op: str) -> str:
        base = self.qualify(op)
        k = self.auto.get(base, 0)
        self.auto[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    def rng(self, pname: str) -> np.random.Generator:
        return param_rng(self.seed, pname)


def param_rng(seed: int, pname: str) -> np.random.Generator:
    """A generator keyed by the parameter's name: inserting a layer never changes another's values."""
    return np.random.default_rng([seed, zlib.crc32(pname.encode())])


def he_normal(seed: int, pname: str, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return param_rng(seed, pname).normal(0.0, math.sqrt(2.0 / fan_in), size=shape).astype(np.float32)


def current() -> Builder:
    if not _current:
        raise ResdslError(
            "DSL call outside a model", caller_loc(), "call nn.* inside a function decorated with @resdsl.model"
        )
    return _current[-1]


@contextlib.contextmanager
def building(name: str, seed: int = 0) -> Iterator[Builder]:
    b = Builder(name, seed)
    _current.append(b)
    try:
        yield b
    finally:
        _current.pop()


class Tensor:
    """A value in the model being built. Supports +, -, * with tensors and numbers."""

    __slots__ = ("builder", "id")

    def __init__(self, builder: Builder, nid: int) -> None:
        self.builder = builder
        self.id = nid

    @property
    def shape(self) -> Shape:
        return self.builder.graph.node(self.id).shape

    def __repr__(self) -> str:
        n = self.builder.graph.node(self.id)
        return f"Tensor({n.name}: {fmt(n.shape)})"

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
        if not isinstance(other, (int, float)):
            raise ResdslError("only division by a number is supported", caller_loc())
        return mul(self, 1.0 / other)


def dsl(fn: Callable) -> Callable:
    """Turn signature mistakes (unknown keywords, missing arguments) into ResdslErrors at the user's line."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            sig.bind(*args, **kwargs)
        except TypeError as e:
            params = ", ".join(p for p in sig.parameters)
            raise ResdslError(f"nn.{fn.__name__}: {e}", caller_loc(), f"it takes {params}") from None
        return fn(*args, **kwargs)

    return wrapper


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
    if isinstance(x, (int, float)):
        return constant(float(x))
    raise ResdslError(f"{what}: expected a tensor, got {type(x).__name__}", caller_loc())


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


def _layer_name(name: str | None, op: str) -> str:
    b = current()
    return b.qualify(name) if name else b.auto_name(op)


def _he_normal(b: Builder, pname: str, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return he_normal(b.seed, pname, shape, fan_in)


def _uniform(b: Builder, pname: str, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    bound = 1.0 / math.sqrt(fan_in)
    return b.rng(pname).uniform(-bound, bound, size=shape).astype(np.float32)


# ---------------------------------------------------------------- structure


@contextlib.contextmanager
def scope(name: str) -> Iterator[None]:
    """Nest layer and parameter names: ``layer1.0.conv1.weight``."""
    b = current()
    b.scopes.append(str(name))
    try:
        yield
    finally:
        b.scopes.pop()


@dsl
def input(name: str, shape: Sequence[int]) -> Tensor:  # noqa: A001 - the DSL's vocabulary
    """A graph input; the batch dimension N is implicit and comes first."""
    b = current()
    if any(not isinstance(d, int) or d <= 0 for d in shape):
        raise ResdslError(f"nn.input: shape {tuple(shape)} must hold positive ints", caller_loc())
    return Tensor(b, b.graph.add_input(name, (BATCH,) + tuple(shape), caller_loc()))


@dsl
def output(name: str, x: Tensor) -> Tensor:
    b = current()
    x = _tensor(x, "nn.output")
    if any(n == name for n, _ in b.graph.outputs):
        raise ResdslError(f"output {name!r} is declared twice", caller_loc())
    b.graph.set_output(name, x.id)
    return x


@dsl
def constant(value: float | np.ndarray, name: str | None = None) -> Tensor:
    b = current()
    pname = _layer_name(name, "const")
    nid = b.graph.add_param(pname, np.asarray(value, dtype=np.float32), CONST, caller_loc())
    return Tensor(b, nid)


@dsl
def parameter(name: str, shape: Sequence[int], init: str = "zeros") -> Tensor:
    """A free trainable tensor (e.g. a class token or position embedding)."""
    b = current()
    pname = b.qualify(name)
    shape = tuple(shape)
    if init == "zeros":
        value = np.zeros(shape, np.float32)
    elif init == "ones":
        value = np.ones(shape, np.float32)
    elif init == "normal":
        value = b.rng(pname).normal(0, 0.02, size=shape).astype(np.float32)
    else:
        raise ResdslError(f"nn.parameter: unknown init {init!r}", caller_loc(), "use zeros, ones or normal")
    return Tensor(b, b.graph.add_param(pname, value, WEIGHT, caller_loc()))


# ---------------------------------------------------------------- layers


@dsl
def conv2d(
    x: Tensor,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    bias: bool = True,
    name: str | None = None,
) -> Tensor:
    b = current()
    x = _tensor(x, "nn.conv2d")
    if len(x.shape) != 4:
        raise ResdslError(f"nn.conv2d expects an NCHW input, got shape {fmt(x.shape)}", caller_loc())
    cin = x.shape[1]
    if cin % groups or out_channels % groups:
        raise ResdslError(
            f"nn.conv2d: in_channels {cin} and out_channels {out_channels} must divide by groups={groups}",
            caller_loc(),
        )
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    layer = _layer_name(name, "conv")
    fan_in = cin // groups * kh * kw
    w = _param(layer, "weight", _he_normal(b, f"{layer}.weight", (out_channels, cin // groups, kh, kw), fan_in))
    inputs = [x, w]
    if bias:
        inputs.append(_param(layer, "bias", _uniform(b, f"{layer}.bias", (out_channels,), fan_in)))
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return _node("conv2d", inputs, attrs, full=layer)


@dsl
def linear(x: Tensor, out_features: int, bias: bool = True, name: str | None = None) -> Tensor:
    b = current()
    x = _tensor(x, "nn.linear")
    if len(x.shape) < 2:
        raise ResdslError(f"nn.linear expects rank >= 2, got {fmt(x.shape)}", caller_loc())
    fan_in = x.shape[-1]
    layer = _layer_name(name, "linear")
    w = _param(layer, "weight", _he_normal(b, f"{layer}.weight", (out_features, fan_in), fan_in))
    inputs = [x, w]
    if bias:
        inputs.append(_param(layer, "bias", _uniform(b, f"{layer}.bias", (out_features,), fan_in)))
    return _node("linear", inputs, full=layer)


@dsl
def batch_norm(x: Tensor, eps: float = 1e-5, name: str | None = None) -> Tensor:
    x = _tensor(x, "nn.batch_norm")
    if len(x.shape) < 2:
        raise ResdslError(f"nn.batch_norm expects rank >= 2, got {fmt(x.shape)}", caller_loc())
    c = x.shape[1]
    layer = _layer_name(name, "bn")
    ins = [
        x,
        _param(layer, "weight", np.ones(c, np.float32)),
        _param(layer, "bias", np.zeros(c, np.float32)),
        _param(layer, "running_mean", np.zeros(c, np.float32), BUFFER),
        _param(layer, "running_var", np.ones(c, np.float32), BUFFER),
    ]
    return _node("batch_norm", ins, {"eps": eps}, full=layer)


@dsl
def layer_norm(x: Tensor, eps: float = 1e-5, name: str | None = None) -> Tensor:
    x = _tensor(x, "nn.layer_norm")
    d = x.shape[-1]
    layer = _layer_name(name, "ln")
    ins = [x, _param(layer, "weight", np.ones(d, np.float32)), _param(layer, "bias", np.zeros(d, np.float32))]
    return _node("layer_norm", ins, {"eps": eps}, full=layer)


def _unary(op: str) -> Callable:
    def fn(x: Tensor, name: str | None = None) -> Tensor:
        return _node(op, [_tensor(x, f"nn.{op}")], name=name)

    fn.__name__ = op
    fn.__doc__ = f"The {op} activation."
    return dsl(fn)


relu = _unary("relu")
gelu = _unary("gelu")
sigmoid = _unary("sigmoid")
silu = _unary("silu")
identity = _unary("identity")
global_avg_pool = _unary("global_avg_pool")


@dsl
def softmax(x: Tensor, axis: int = -1, name: str | None = None) -> Tensor:
    return _node("softmax", [_tensor(x, "nn.softmax")], {"axis": axis}, name=name)


@dsl
def max_pool2d(x: Tensor, kernel_size: int, stride: int | None = None, padding: int = 0, name=None) -> Tensor:
    return _node(
        "max_pool2d",
        [_tensor(x, "nn.max_pool2d")],
        {"kernel": kernel_size, "stride": stride, "padding": padding},
        name=name,
    )


@dsl
def avg_pool2d(x: Tensor, kernel_size: int, stride: int | None = None, padding: int = 0, name=None) -> Tensor:
    return _node(
        "avg_pool2d",
        [_tensor(x, "nn.avg_pool2d")],
        {"kernel": kernel_size, "stride": stride, "padding": padding},
        name=name,
    )


@dsl
def flatten(x: Tensor, axis: int = 1, name: str | None = None) -> Tensor:
    return _node("flatten", [_tensor(x, "nn.flatten")], {"axis": axis}, name=name)


@dsl
def reshape(x: Tensor, shape: Sequence[int | str], name: str | None = None) -> Tensor:
    """Reshape; write the batch dimension as "N" (or 0 to copy an axis), and -1 to infer one."""
    target = tuple(0 if d == BATCH else int(d) for d in shape)
    return _node("reshape", [_tensor(x, "nn.reshape")], {"shape": target}, name=name)


@dsl
def transpose(x: Tensor, perm: Sequence[int], name: str | None = None) -> Tensor:
    return _node("transpose", [_tensor(x, "nn.transpose")], {"perm": tuple(perm)}, name=name)


@dsl
def matmul(a: Tensor, b: Tensor, name: str | None = None) -> Tensor:
    return _node("matmul", [_tensor(a, "nn.matmul"), _tensor(b, "nn.matmul")], name=name)


@dsl
def concat(xs: Sequence[Tensor], axis: int = 1, name: str | None = None) -> Tensor:
    return _node("concat", [_tensor(x, "nn.concat") for x in xs], {"axis": axis}, name=name)


@dsl
def pad(x: Tensor, pads: Sequence[int], name: str | None = None) -> Tensor:
    return _node("pad", [_tensor(x, "nn.pad")], {"pads": tuple(pads)}, name=name)


@dsl
def mul(a: Tensor | float, b: Tensor | float, name: str | None = None) -> Tensor:
    return _node("mul", [_tensor(a, "nn.mul"), _tensor(b, "nn.mul")], name=name)


@dsl
def sub(a: Tensor | float, b: Tensor | float, name: str | None = None) -> Tensor:
    return _node("sub", [_tensor(a, "nn.sub"), _tensor(b, "nn.sub")], name=name)


@dsl
def add(a: Tensor | float, b: Tensor | float, name: str | None = None) -> Tensor:
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

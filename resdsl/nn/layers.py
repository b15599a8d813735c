"""Layers with parameters, in two forms.

Functional (``nn.conv2d(x, 64, 3)``): the layer is created at the call, its input sizes
read from ``x``; each call is a new layer. Layer objects (``fc = nn.Linear(64, 10)``,
then ``fc(x)`` and ``fc(y)``): the parameters are created once and every call shares
them, the way a PyTorch module attribute is used; they appear once in the graph and
in the state_dict. Parameter names follow torchvision (``<scope>.<layer>.weight``), and
values come from the initialisers in the core, keyed by the parameter's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import init as initialisers
from ..errors import ResdslError, caller_loc
from ..ir import BUFFER, WEIGHT
from ..shapes import fmt
from . import check
from .builder import Builder, current
from .check import dsl
from .tensor import Tensor, _layer_name, _node, _param, _tensor, pad

# ---------------------------------------------------------------- free parameters


@dsl
def parameter(name: str, shape: Sequence[int], *, init: str | float = "zeros") -> Tensor:
    """A free trainable tensor (e.g. a class token or position embedding).

    ``init`` is zeros, ones, normal (std 0.02), or a number every entry starts at
    (ConvNeXt's layer scale starts at 1e-6, as torch.full would make it)."""
    b = current()
    pname = b.qualify(check.name("parameter", name) or "")
    shape = tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape):
        raise check.fail("parameter", f"shape {shape} must hold positive ints")
    if isinstance(init, int | float) and not isinstance(init, bool):
        value = np.full(shape, init, np.float32)
    elif init == "zeros":
        value = np.zeros(shape, np.float32)
    elif init == "ones":
        value = np.ones(shape, np.float32)
    elif init == "normal":
        value = initialisers.normal(b.seed, pname, shape, 0.02)
    else:
        raise ResdslError(f"nn.parameter: unknown init {init!r}", caller_loc(), "use zeros, ones, normal or a number")
    return Tensor(b, b.graph.add_param(pname, value, WEIGHT, caller_loc()))


# ---------------------------------------------------------------- layer state


class _Params:
    """The parameter tensors of one layer, created once in the build that made them."""

    def __init__(self, builder: Builder, layer: str, tensors: list[Tensor]) -> None:
        self.builder, self.layer, self.tensors = builder, layer, tensors

    def check_builder(self, fn: str) -> None:
        if current() is not self.builder:
            raise check.fail(
                fn, f"layer {self.layer!r} was created in another model build", "create layers inside the model"
            )


def _conv_params(
    fn: str, cin: int, out_channels: Any, kernel_size: Any, groups: Any, bias: bool, name, transposed=False
):
    b = current()
    out = check.integer(fn, "out_channels", out_channels, 1)
    kh, kw = check.pair(fn, "kernel_size", kernel_size, 1)
    g = check.integer(fn, "groups", groups, 1)
    if cin % g or out % g:
        raise check.fail(fn, f"in_channels {cin} and out_channels {out} must divide by groups={g}")
    layer = _layer_name(fn, name, "conv")
    if transposed:
        shape, fan_in = (cin, out // g, kh, kw), out // g * kh * kw
    else:
        shape, fan_in = (out, cin // g, kh, kw), cin // g * kh * kw
    tensors = [_param(layer, "weight", initialisers.he_normal(b.seed, f"{layer}.weight", shape, fan_in))]
    if bias:
        tensors.append(_param(layer, "bias", initialisers.uniform_fan_in(b.seed, f"{layer}.bias", (out,), fan_in)))
    return layer, tensors


def _conv_attrs(
    fn: str, x: Tensor, kernel: tuple[int, int], stride, padding, dilation, groups
) -> tuple[dict, tuple | None]:
    """Attributes of a conv, and the (top, left, bottom, right) pads of an asymmetric "same" padding."""
    s = check.pair(fn, "stride", stride, 1)
    d = check.pair(fn, "dilation", dilation, 1)
    extra = None
    if isinstance(padding, str):
        check.choice(fn, "padding", padding, ("same", "valid"))
        if padding == "valid":
            p = (0, 0)
        else:
            if s != (1, 1):
                raise check.fail(fn, 'padding="same" needs stride=1 (as in PyTorch)')
            totals = [dd * (k - 1) for dd, k in zip(d, kernel)]
            p = tuple(t // 2 for t in totals)
            if any(t % 2 for t in totals):  # PyTorch puts the odd pixel at the bottom/right
                extra = (0, 0, totals[0] % 2, totals[1] % 2)
    else:
        p = check.pair(fn, "padding", padding, 0)
    for size, k, pp, dd in zip(x.shape[2:], kernel, p, d):
        if isinstance(size, int) and size + 2 * pp < dd * (k - 1) + 1:
            raise check.fail(
                fn, f"the kernel {kernel} (dilation {d}) is larger than the padded input {fmt(x.shape[2:])}"
            )
    return {"stride": s, "padding": p, "dilation": d, "groups": groups}, extra


def _nchw(fn: str, x: Any) -> Tensor:
    x = _tensor(x, f"nn.{fn}")
    if len(x.shape) != 4:
        raise check.fail(fn, f"expects an NCHW input, got shape {fmt(x.shape)}")
    return x


def _apply_conv(x: Tensor, layer: str, tensors: list[Tensor], attrs: dict, extra: tuple | None) -> Tensor:
    if extra is not None:
        top, left, bottom, right = extra
        x = pad(x, (0, 0, top, left, 0, 0, bottom, right), name=f"{layer}.pad" if "." in layer else None)
    return _node("conv2d", [x, *tensors], attrs, full=layer)


@dsl
def conv2d(
    x: Tensor,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    bias: bool = True,
    name: str | None = None,
) -> Tensor:
    """A 2-D convolution creating its parameters; in_channels come from ``x``. padding may be "same"/"valid"."""
    x = _nchw("conv2d", x)
    layer, tensors = _conv_params("conv2d", x.shape[1], out_channels, kernel_size, groups, bias, name)
    kernel = tuple(tensors[0].shape[2:])
    attrs, extra = _conv_attrs("conv2d", x, kernel, stride, padding, dilation, groups)
    return _apply_conv(x, layer, tensors, attrs, extra)


@dsl
def conv_transpose2d(
    x: Tensor,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    bias: bool = True,
    name: str | None = None,
) -> Tensor:
    """torch.nn.ConvTranspose2d: the weight is (in_channels, out_channels / groups, kh, kw)."""
    fn = "conv_transpose2d"
    x = _nchw(fn, x)
    layer, tensors = _conv_params(fn, x.shape[1], out_channels, kernel_size, groups, bias, name, transposed=True)
    s, d = check.pair(fn, "stride", stride, 1), check.pair(fn, "dilation", dilation, 1)
    p, op = check.pair(fn, "padding", padding, 0), check.pair(fn, "output_padding", output_padding, 0)
    attrs = {"stride": s, "padding": p, "output_padding": op, "dilation": d, "groups": groups}
    return _node("conv_transpose2d", [x, *tensors], attrs, full=layer)


def _linear_params(fn: str, in_features: int, out_features: Any, bias: bool, name) -> tuple[str, list[Tensor]]:
    b = current()
    out = check.integer(fn, "out_features", out_features, 1)
    if not isinstance(bias, bool):
        raise check.fail(fn, f"bias={bias!r} must be True or False", "resdsl reads in_features from the input")
    layer = _layer_name(fn, name, "linear")
    tensors = [
        _param(layer, "weight", initialisers.he_normal(b.seed, f"{layer}.weight", (out, in_features), in_features))
    ]
    if bias:
        tensors.append(_param(layer, "bias", initialisers.uniform_fan_in(b.seed, f"{layer}.bias", (out,), in_features)))
    return layer, tensors


@dsl
def linear(x: Tensor, out_features: int, *, bias: bool = True, name: str | None = None) -> Tensor:
    """y = x W^T + b over the last axis; in_features come from ``x``."""
    x = _tensor(x, "nn.linear")
    if len(x.shape) < 2:
        raise check.fail("linear", f"expects rank >= 2, got {fmt(x.shape)}")
    layer, tensors = _linear_params("linear", x.shape[-1], out_features, bias, name)
    return _node("linear", [x, *tensors], full=layer)


def _bn_params(fn: str, c: int, name) -> tuple[str, list[Tensor]]:
    layer = _layer_name(fn, name, "bn")
    return layer, [
        _param(layer, "weight", np.ones(c, np.float32)),
        _param(layer, "bias", np.zeros(c, np.float32)),
        _param(layer, "running_mean", np.zeros(c, np.float32), BUFFER),
        _param(layer, "running_var", np.ones(c, np.float32), BUFFER),
    ]


@dsl
def batch_norm(x: Tensor, *, eps: float = 1e-5, name: str | None = None) -> Tensor:
    x = _tensor(x, "nn.batch_norm")
    if len(x.shape) < 2:
        raise check.fail("batch_norm", f"expects rank >= 2, got {fmt(x.shape)}")
    eps = _eps("batch_norm", eps)
    layer, tensors = _bn_params("batch_norm", x.shape[1], name)
    return _node("batch_norm", [x, *tensors], {"eps": eps}, full=layer)


def _eps(fn: str, eps: Any) -> float:
    value = check.number(fn, "eps", eps)
    if value <= 0:
        raise check.fail(fn, f"eps={eps} must be positive")
    return value


def _affine(fn: str, c: int, name, default: str) -> tuple[str, list[Tensor]]:
    layer = _layer_name(fn, name, default)
    return layer, [_param(layer, "weight", np.ones(c, np.float32)), _param(layer, "bias", np.zeros(c, np.float32))]


@dsl
def layer_norm(
    x: Tensor,
    normalized_shape: int | Sequence[int] | None = None,
    *,
    eps: float = 1e-5,
    channels_first: bool = False,
    name: str | None = None,
) -> Tensor:
    """Layer norm over the last axis (torch.nn.LayerNorm), or over the channels with
    ``channels_first=True`` (ConvNeXt's LayerNorm2d on NCHW)."""
    fn = "layer_norm"
    x = _tensor(x, f"nn.{fn}")
    axis = 1 if channels_first else -1
    if channels_first and len(x.shape) < 3:
        raise check.fail(fn, f"channels_first needs an (N, C, ...) input, got {fmt(x.shape)}")
    size = x.shape[axis]
    if normalized_shape is not None:
        given = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if given != (size,):
            raise check.fail(
                fn,
                f"normalized_shape={normalized_shape!r} does not match the normalised axis ({size},) of {fmt(x.shape)}",
                "resdsl normalises one axis; pass eps= by keyword",
            )
    layer, tensors = _affine(fn, size, name, "ln")
    return _node("layer_norm", [x, *tensors], {"eps": _eps(fn, eps), "axis": axis}, full=layer)


@dsl
def group_norm(x: Tensor, num_groups: int, *, eps: float = 1e-5, name: str | None = None) -> Tensor:
    fn = "group_norm"
    x = _tensor(x, f"nn.{fn}")
    g = check.integer(fn, "num_groups", num_groups, 1)
    if len(x.shape) < 2 or x.shape[1] % g:
        raise check.fail(fn, f"the {x.shape[1]} channels of {fmt(x.shape)} do not divide into {g} groups")
    layer, tensors = _affine(fn, x.shape[1], name, "gn")
    return _node("group_norm", [x, *tensors], {"num_groups": g, "eps": _eps(fn, eps)}, full=layer)


@dsl
def embedding(indices: Tensor, num_embeddings: int, embedding_dim: int, *, name: str | None = None) -> Tensor:
    """torch.nn.Embedding: rows of a (num_embeddings, embedding_dim) table, looked up by int64 indices."""
    fn = "embedding"
    idx = _tensor(indices, f"nn.{fn}")
    if idx.dtype != "int64":
        raise check.fail(fn, f"indices must be int64, got {idx.dtype}", 'declare the input with dtype="int64"')
    layer, tensors = _embedding_params(fn, num_embeddings, embedding_dim, name)
    return _node("embedding", [idx, *tensors], full=layer)


def _embedding_params(fn: str, num: Any, dim: Any, name) -> tuple[str, list[Tensor]]:
    b = current()
    num, dim = check.integer(fn, "num_embeddings", num, 1), check.integer(fn, "embedding_dim", dim, 1)
    layer = _layer_name(fn, name, "embedding")
    return layer, [_param(layer, "weight", initialisers.normal(b.seed, f"{layer}.weight", (num, dim), 1.0))]


# ---------------------------------------------------------------- layer objects (weight sharing)


class Layer:
    """A layer created once whose every call shares its parameters (``self.fc = nn.Linear(...)``)."""

    fn = "layer"

    def __init__(self, layer: str, tensors: list[Tensor]) -> None:
        self._params = _Params(current(), layer, tensors)

    @property
    def name(self) -> str:
        return self._params.layer

    def __call__(self, x: Tensor) -> Tensor:
        self._params.check_builder(self.fn)
        x = _tensor(x, f"nn.{type(self).__name__}")
        self._check_input(x)
        return self._apply(x)

    def _check_input(self, x: Tensor) -> None:  # overridden where the input size is fixed
        pass

    def _apply(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _node(self, op: str, x: Tensor, attrs: dict | None = None) -> Tensor:
        """The first call's node takes the layer's name, as the functional form would; later calls number it."""
        calls = getattr(self, "_calls", 0)
        self._calls = calls + 1
        full = self.name if calls == 0 else f"{self.name}_{calls}"
        return _node(op, [x, *self._params.tensors], attrs, full=full)


class Linear(Layer):
    fn = "Linear"

    @dsl
    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, name: str | None = None) -> None:
        self.in_features = check.integer("Linear", "in_features", in_features, 1)
        super().__init__(*_linear_params("Linear", self.in_features, out_features, bias, name))

    def _check_input(self, x: Tensor) -> None:
        if len(x.shape) < 2 or x.shape[-1] != self.in_features:
            raise check.fail("Linear", f"{self.name} takes {self.in_features} features, the input is {fmt(x.shape)}")

    def _apply(self, x: Tensor) -> Tensor:
        return self._node("linear", x)


class Conv2d(Layer):
    fn = "Conv2d"

    @dsl
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        name: str | None = None,
    ) -> None:
        self.in_channels = check.integer("Conv2d", "in_channels", in_channels, 1)
        super().__init__(*_conv_params("Conv2d", self.in_channels, out_channels, kernel_size, groups, bias, name))
        self.options = (stride, padding, dilation, groups)

    def _check_input(self, x: Tensor) -> None:
        if len(x.shape) != 4 or x.shape[1] != self.in_channels:
            raise check.fail("Conv2d", f"{self.name} takes {self.in_channels} channels, the input is {fmt(x.shape)}")

    def _apply(self, x: Tensor) -> Tensor:
        kernel = tuple(self._params.tensors[0].shape[2:])
        attrs, extra = _conv_attrs("Conv2d", x, kernel, *self.options)
        if extra is not None:
            top, left, bottom, right = extra
            x = pad(x, (0, 0, top, left, 0, 0, bottom, right))
        return self._node("conv2d", x, attrs)


class BatchNorm2d(Layer):
    fn = "BatchNorm2d"

    @dsl
    def __init__(self, num_features: int, *, eps: float = 1e-5, name: str | None = None) -> None:
        self.num_features = check.integer("BatchNorm2d", "num_features", num_features, 1)
        self.eps = _eps("BatchNorm2d", eps)
        super().__init__(*_bn_params("BatchNorm2d", self.num_features, name))

    def _check_input(self, x: Tensor) -> None:
        if len(x.shape) < 2 or x.shape[1] != self.num_features:
            raise check.fail(
                "BatchNorm2d", f"{self.name} takes {self.num_features} channels, the input is {fmt(x.shape)}"
            )

    def _apply(self, x: Tensor) -> Tensor:
        return self._node("batch_norm", x, {"eps": self.eps})


class LayerNorm(Layer):
    fn = "LayerNorm"

    @dsl
    def __init__(self, normalized_shape: int | Sequence[int], *, eps: float = 1e-5, name: str | None = None) -> None:
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if len(shape) != 1:
            raise check.fail("LayerNorm", f"normalized_shape={normalized_shape!r}: resdsl normalises one axis")
        self.size = check.integer("LayerNorm", "normalized_shape", shape[0], 1)
        self.eps = _eps("LayerNorm", eps)
        super().__init__(*_affine("LayerNorm", self.size, name, "ln"))

    def _check_input(self, x: Tensor) -> None:
        if x.shape[-1] != self.size:
            raise check.fail("LayerNorm", f"{self.name} normalises {self.size} features, the input is {fmt(x.shape)}")

    def _apply(self, x: Tensor) -> Tensor:
        return self._node("layer_norm", x, {"eps": self.eps, "axis": -1})


class Embedding(Layer):
    fn = "Embedding"

    @dsl
    def __init__(self, num_embeddings: int, embedding_dim: int, *, name: str | None = None) -> None:
        super().__init__(*_embedding_params("Embedding", num_embeddings, embedding_dim, name))

    def _check_input(self, x: Tensor) -> None:
        if x.dtype != "int64":
            raise check.fail(
                "Embedding", f"indices must be int64, got {x.dtype}", 'declare the input with dtype="int64"'
            )

    def _apply(self, x: Tensor) -> Tensor:
        return self._node("embedding", x)

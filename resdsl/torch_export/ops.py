"""How each registered op reads in PyTorch: one table keyed by op name.

An entry turns a node and its argument expressions into one Python expression of the
exported file. Ops with parameters also have a ``LAYERS`` entry: when a node's
parameters are exactly a layer's (``conv1.weight``, ``conv1.bias``), the export makes
it an ``nn.Conv2d`` named ``conv1``, so ``print(model)`` and ``state_dict()`` read as
PyTorch's own layers do, and batch norm's statistics update in ``train()``. A node
whose parameters do not fit (shared across different ops, oddly named) is rendered
functionally on the same parameters instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from resdsl.ir import Node
from resdsl.shapes import Shape


class Context(Protocol):
    """What a rendering may ask of the exporter (``resdsl.torch_export.source``)."""

    def module(self, node: Node) -> str | None:
        """The expression of the layer module rendering ``node`` (``self.layer1[0].conv1``), if any."""

    def helper(self, name: str) -> None:
        """Ask for a helper definition of the exported file (``stochastic_depth``, ``ChannelLayerNorm``)."""


Render = Callable[[Context, Node, list[str]], str]


def lit(value) -> str:
    """A Python literal: tuples stay tuples, floats print exactly (float32 values are exact doubles)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, (tuple, list)):
        items = [lit(v) for v in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    return repr(value)


def _window(value: tuple[int, int]) -> str:
    """A pair as PyTorch writes it: ``3`` when square, ``(3, 1)`` otherwise."""
    return lit(value[0]) if value[0] == value[1] else lit(tuple(value))


def _opt(a: list[str], i: int) -> str:
    return a[i] if len(a) > i else "None"


# ---------------------------------------------------------------- layers


@dataclass(frozen=True)
class Layer:
    """A PyTorch layer for an op: which inputs are its parameters (position -> attribute) and
    its constructor text from the node and its parameter shapes."""

    roles: dict[int, str]
    required: int  # how many leading roles must be present (weight; bias may be absent)
    make: Callable[[Node, dict[str, Shape], Shape], str]  # node, role -> shape, input shape


def _conv_module(cls: str, cin: int, cout: int, n: Node, p: dict[str, Shape], keys: tuple[str, ...]) -> str:
    """``nn.Conv2d``/``nn.ConvTranspose2d(cin, cout, kernel, ...)`` with the attributes that differ from PyTorch's defaults."""
    g = n.attrs["groups"]
    parts = [str(cin), str(cout), _window(tuple(p["weight"][2:]))]
    for key in keys:
        if tuple(n.attrs[key]) != ((1, 1) if key in ("stride", "dilation") else (0, 0)):
            parts.append(f"{key}={_window(n.attrs[key])}")
    if g != 1:
        parts.append(f"groups={g}")
    if "bias" not in p:
        parts.append("bias=False")
    return f"nn.{cls}({', '.join(parts)})"


def _conv_make(n: Node, p: dict[str, Shape], x: Shape) -> str:
    out, cin_g = p["weight"][:2]
    return _conv_module("Conv2d", cin_g * n.attrs["groups"], out, n, p, ("stride", "padding", "dilation"))


def _conv_transpose_make(n: Node, p: dict[str, Shape], x: Shape) -> str:
    cin, og = p["weight"][:2]
    keys = ("stride", "padding", "output_padding", "dilation")
    return _conv_module("ConvTranspose2d", cin, og * n.attrs["groups"], n, p, keys)


def _eps(n: Node) -> str:
    return "" if float(n.attrs["eps"]) == 1e-5 else f", eps={lit(float(n.attrs['eps']))}"


def _bn_make(n: Node, p: dict[str, Shape], x: Shape) -> str:
    kind = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}[len(x)]
    return f"nn.{kind}({p['weight'][0]}{_eps(n)})"


def _layer_norm_make(n: Node, p: dict[str, Shape], x: Shape) -> str:
    if n.attrs["axis"] == 1:
        return f"ChannelLayerNorm({p['weight'][0]}{_eps(n)})"
    return f"nn.LayerNorm({p['weight'][0]}{_eps(n)})"


LAYERS: dict[str, Layer] = {
    "conv2d": Layer({1: "weight", 2: "bias"}, 1, _conv_make),
    "fused_conv": Layer({1: "weight", 2: "bias"}, 1, _conv_make),
    "conv_transpose2d": Layer({1: "weight", 2: "bias"}, 1, _conv_transpose_make),
    "linear": Layer(
        {1: "weight", 2: "bias"},
        1,
        lambda n, p, x: f"nn.Linear({p['weight'][1]}, {p['weight'][0]}{'' if 'bias' in p else ', bias=False'})",
    ),
    "batch_norm": Layer({1: "weight", 2: "bias", 3: "running_mean", 4: "running_var"}, 4, _bn_make),
    "layer_norm": Layer({1: "weight", 2: "bias"}, 2, _layer_norm_make),
    "group_norm": Layer(
        {1: "weight", 2: "bias"}, 2, lambda n, p, x: f"nn.GroupNorm({n.attrs['num_groups']}, {p['weight'][0]}{_eps(n)})"
    ),
    "embedding": Layer({1: "weight"}, 1, lambda n, p, x: f"nn.Embedding({p['weight'][0]}, {p['weight'][1]})"),
}


# ---------------------------------------------------------------- renderings


def _conv(r: Context, n: Node, a: list[str]) -> str:
    m = r.module(n)
    if m:
        return f"{m}({a[0]})"
    s, p, d = (_window(n.attrs[k]) for k in ("stride", "padding", "dilation"))
    return f"F.conv2d({a[0]}, {a[1]}, {_opt(a, 2)}, {s}, {p}, {d}, {n.attrs['groups']})"


_ACT = {"none": "{}", "relu": "F.relu({})", "sigmoid": "torch.sigmoid({})"}


def _fused_conv(r: Context, n: Node, a: list[str]) -> str:
    y = _conv(r, n, a[:3])
    if len(a) > 3:
        y = f"{y} + {a[3]}"
    return _ACT[n.attrs["activation"]].format(y)


def _conv_transpose(r: Context, n: Node, a: list[str]) -> str:
    m = r.module(n)
    if m:
        return f"{m}({a[0]})"
    s, p, op, d = (_window(n.attrs[k]) for k in ("stride", "padding", "output_padding", "dilation"))
    return f"F.conv_transpose2d({a[0]}, {a[1]}, {_opt(a, 2)}, {s}, {p}, {op}, {n.attrs['groups']}, {d})"


def _linear(r: Context, n: Node, a: list[str]) -> str:
    m = r.module(n)
    return f"{m}({a[0]})" if m else f"F.linear({a[0]}, {a[1]}, {_opt(a, 2)})"


def _batch_norm(r: Context, n: Node, a: list[str]) -> str:
    m = r.module(n)
    if m:
        return f"{m}({a[0]})"
    x, w, b, mean, var = a
    return f"F.batch_norm({x}, {mean}, {var}, {w}, {b}, self.training, 0.1, {lit(float(n.attrs['eps']))})"


def _layer_norm(r: Context, n: Node, a: list[str]) -> str:
    m = r.module(n)
    if m:
        return f"{m}({a[0]})"
    eps = lit(float(n.attrs["eps"]))
    if n.attrs["axis"] == 1:
        r.helper("channel_layer_norm")
        return f"channel_layer_norm({a[0]}, {a[1]}, {a[2]}, {eps})"
    return f"F.layer_norm({a[0]}, {a[1]}.shape, {a[1]}, {a[2]}, {eps})"


def _group_norm(r: Context, n: Node, a: list[str]) -> str:
    m = r.module(n)
    if m:
        return f"{m}({a[0]})"
    return f"F.group_norm({a[0]}, {n.attrs['num_groups']}, {a[1]}, {a[2]}, {lit(float(n.attrs['eps']))})"


def _embedding(r: Context, n: Node, a: list[str]) -> str:
    m = r.module(n)
    return f"{m}({a[0]})" if m else f"F.embedding({a[0]}, {a[1]})"


def _pool(fn: str) -> Render:
    def render(r: Context, n: Node, a: list[str]) -> str:
        k = n.attrs["kernel"]
        s = n.attrs["stride"] or k
        args = [a[0], _window(k), _window(s), _window(n.attrs["padding"])]
        if n.attrs["ceil_mode"]:
            args.append("ceil_mode=True")
        if fn == "avg_pool2d" and not n.attrs["count_include_pad"]:
            args.append("count_include_pad=False")
        return f"F.{fn}({', '.join(args)})"

    return render


def _reduce(fn: str) -> Render:
    return lambda r, n, a: f"torch.{fn}({a[0]}, dim={lit(tuple(n.attrs['axes']))}, keepdim={n.attrs['keepdim']})"


def _resize(r: Context, n: Node, a: list[str]) -> str:
    size, mode = lit(tuple(n.attrs["size"])), n.attrs["mode"]
    if mode == "nearest":
        return f'F.interpolate({a[0]}, size={size}, mode="nearest")'
    return f'F.interpolate({a[0]}, size={size}, mode="bilinear", align_corners={n.attrs["align_corners"]})'


def _reshape(r: Context, n: Node, a: list[str]) -> str:
    dims = [f"{a[0]}.shape[{i}]" if d == 0 else lit(d) for i, d in enumerate(n.attrs["shape"])]
    return f"{a[0]}.reshape({', '.join(dims)})"


def _pad(r: Context, n: Node, a: list[str]) -> str:
    pads = list(n.attrs["pads"])
    rank = len(pads) // 2
    pairs = [(pads[i], pads[i + rank]) for i in reversed(range(rank))]  # F.pad: last axis first
    while pairs and pairs[-1] == (0, 0):
        pairs.pop()
    return f"F.pad({a[0]}, {lit(tuple(v for p in pairs for v in p))})" if pairs else a[0]


def _slice(r: Context, n: Node, a: list[str]) -> str:
    step = n.attrs["step"]
    cut = f"{n.attrs['start']}:{n.attrs['end']}" + (f":{step}" if step != 1 else "")
    return f"{a[0]}[{', '.join([':'] * n.attrs['axis'] + [cut])}]"


def _stochastic_depth(r: Context, n: Node, a: list[str]) -> str:
    r.helper("stochastic_depth")
    return f'stochastic_depth({a[0]}, {lit(n.attrs["p"])}, "{n.attrs["mode"]}", self.training)'


def _call(fmt: str) -> Render:
    """A rendering from a format over the arguments and the attributes: ``F.elu({0}, {alpha})``."""
    return lambda r, n, a: fmt.format(*a, **{k: lit(v) for k, v in n.attrs.items()})


TORCH_OPS: dict[str, Render] = {
    "conv2d": _conv,
    "fused_conv": _fused_conv,
    "conv_transpose2d": _conv_transpose,
    "linear": _linear,
    "matmul": _call("torch.matmul({0}, {1})"),
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
    "embedding": _embedding,
    "relu": _call("F.relu({0})"),
    "sigmoid": _call("torch.sigmoid({0})"),
    "silu": _call("F.silu({0})"),
    "gelu": _call("F.gelu({0})"),
    "tanh": _call("torch.tanh({0})"),
    "clip": _call("torch.clamp({0}, {min}, {max})"),
    "hardsigmoid": _call("F.hardsigmoid({0})"),
    "hardswish": _call("F.hardswish({0})"),
    "leaky_relu": _call("F.leaky_relu({0}, {negative_slope})"),
    "elu": _call("F.elu({0}, {alpha})"),
    "identity": _call("{0}"),
    "softmax": _call("torch.softmax({0}, dim={axis})"),
    "dropout": _call("F.dropout({0}, {p}, self.training)"),
    "stochastic_depth": _stochastic_depth,
    "max_pool2d": _pool("max_pool2d"),
    "avg_pool2d": _pool("avg_pool2d"),
    "global_avg_pool": _call("torch.mean({0}, dim=(2, 3), keepdim=True)"),
    "reduce_mean": _reduce("mean"),
    "reduce_sum": _reduce("sum"),
    "reduce_max": _reduce("amax"),
    "resize": _resize,
    "add": _call("{0} + {1}"),
    "sub": _call("{0} - {1}"),
    "mul": _call("{0} * {1}"),
    "div": _call("{0} / {1}"),
    "pow": _call("torch.pow({0}, {exponent})"),
    "sum": lambda r, n, a: " + ".join(a),
    "flatten": _call("torch.flatten({0}, {axis})"),
    "reshape": _reshape,
    "transpose": lambda r, n, a: f"{a[0]}.permute{lit(tuple(n.attrs['perm']))}",
    "concat": lambda r, n, a: f"torch.cat([{', '.join(a)}], dim={n.attrs['axis']})",
    "pad": _pad,
    "slice": _slice,
    "cast": lambda r, n, a: f"{a[0]}.to(torch.{n.attrs['dtype']})",
    "quantize": lambda r, n, a: _with_helper(r, "quantize", f"quantize({a[0]}, {_qargs(n)}, torch.{n.attrs['dtype']})"),
    "dequantize": lambda r, n, a: _with_helper(r, "dequantize", f"dequantize({a[0]}, {_qargs(n)})"),
}


def _qargs(n: Node) -> str:
    return f"{lit(n.attrs['scale'])}, {lit(n.attrs['zero_point'])}, {n.attrs['axis']}"


def _with_helper(r: Context, name: str, text: str) -> str:
    r.helper(name)
    return text


# Definitions an exported file carries only when a rendering asks for them.
HELPERS: dict[str, str] = {
    "quantize": '''
_QRANGE = {torch.int8: (-128, 127), torch.uint8: (0, 255), torch.int32: (-(2**31), 2**31 - 1)}


def _per_channel(value, x: torch.Tensor, axis: int, dtype) -> torch.Tensor:
    v = torch.tensor(value, dtype=dtype)
    if v.ndim:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = v.numel()
        v = v.reshape(shape)
    return v


def quantize(x: torch.Tensor, scale, zero_point, axis: int, dtype) -> torch.Tensor:
    """ONNX QuantizeLinear: round half to even, add the zero point, saturate (per tensor or per channel)."""
    lo, hi = _QRANGE[dtype]
    q = torch.round(x / _per_channel(scale, x, axis, torch.float32)) + _per_channel(zero_point, x, axis, torch.float64)
    return torch.clamp(q, lo, hi).to(dtype)
''',
    "dequantize": '''
def dequantize(q: torch.Tensor, scale, zero_point, axis: int) -> torch.Tensor:
    """ONNX DequantizeLinear: (q - zero_point) * scale."""
    s = torch.tensor(scale, dtype=torch.float32)
    z = torch.tensor(zero_point, dtype=torch.int64)
    if s.ndim or z.ndim:
        shape = [1] * q.ndim
        shape[axis % q.ndim] = max(s.numel(), z.numel())
        s, z = s.reshape(shape) if s.ndim else s, z.reshape(shape) if z.ndim else z
    return (q.to(torch.int64) - z).to(torch.float32) * s
''',
    "stochastic_depth": '''
def stochastic_depth(x: torch.Tensor, p: float, mode: str, training: bool) -> torch.Tensor:
    """torchvision.ops.stochastic_depth: in training, zero the whole residual branch of a sample
    ("row") or of the batch ("batch") with probability p and scale survivors by 1 / (1 - p)."""
    if not training or p == 0.0:
        return x
    shape = [x.shape[0]] + [1] * (x.ndim - 1) if mode == "row" else [1] * x.ndim
    noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - p)
    return x * noise.div_(1.0 - p)
''',
    "channel_layer_norm": '''
def channel_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Layer norm over the channels (axis 1) of an NCHW tensor, as ConvNeXt's LayerNorm2d."""
    return F.layer_norm(x.movedim(1, -1), weight.shape, weight, bias, eps).movedim(-1, 1)
''',
    "ChannelLayerNorm": '''
class ChannelLayerNorm(nn.Module):
    """nn.LayerNorm over the channels (axis 1) of an NCHW tensor, as ConvNeXt's LayerNorm2d."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
''',
}
HELPER_NEEDS = {"ChannelLayerNorm": ("channel_layer_norm",)}

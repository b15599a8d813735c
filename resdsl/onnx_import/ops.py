"""Converters of the parameter-free ONNX ops: activations, arithmetic, pooling, layout, resampling."""

from __future__ import annotations

import math

import numpy as np

from .convert import CONVERTERS, Importer, _scalar, converter
from .fold import BATCH_MARK

_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hardswish", "Gelu": "gelu"}


@converter(*_UNARY)
def _unary(im: Importer, a: dict, ins: list):
    if im.node.op_type == "Gelu" and a.get("approximate", "none") != "none":
        im.fail("Gelu with approximate='tanh' is not supported")
    return im.add(_UNARY[im.node.op_type], [im.tensor(ins[0])])


@converter("Identity", "Dropout")
def _identity(im: Importer, a: dict, ins: list):
    return im.tensor(ins[0])


@converter("LeakyRelu")
def _leaky(im: Importer, a: dict, ins: list):
    return im.add("leaky_relu", [im.tensor(ins[0])], {"negative_slope": a.get("alpha", 0.01)})


@converter("Elu")
def _elu(im: Importer, a: dict, ins: list):
    return im.add("elu", [im.tensor(ins[0])], {"alpha": a.get("alpha", 1.0)})


@converter("HardSigmoid")
def _hardsigmoid(im: Importer, a: dict, ins: list):
    alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
    x = im.tensor(ins[0])
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and math.isclose(beta, 0.5, rel_tol=1e-6):
        return im.add("hardsigmoid", [x])
    scaled = im.add("mul", [x, im.param(np.float32(alpha), f"{im.layer()}.alpha", "", "const")])
    shifted = im.add("add", [scaled, im.param(np.float32(beta), f"{im.layer()}.beta", "", "const")])
    return im.add("clip", [shifted], {"min": 0.0, "max": 1.0})


@converter("Clip")
def _clip(im: Importer, a: dict, ins: list):
    lo = _scalar(im.const(ins[1]) if len(ins) > 1 and ins[1] else None, a.get("min", -math.inf))
    hi = _scalar(im.const(ins[2]) if len(ins) > 2 and ins[2] else None, a.get("max", math.inf))
    for k in (1, 2):
        if len(ins) > k and ins[k] and im.const(ins[k]) is None:
            im.fail("Clip bounds must be constants")
    x = im.tensor(ins[0])
    if lo == 0.0 and hi == math.inf:
        return im.add("relu", [x])
    return im.add("clip", [x], {"min": lo, "max": hi})


@converter("Add", "Sub", "Mul", "Div")
def _binary(im: Importer, a: dict, ins: list):
    return im.add(im.node.op_type.lower(), [im.tensor(ins[0]), im.tensor(ins[1])])


@converter("Pow")
def _pow(im: Importer, a: dict, ins: list):
    exponent = im.need_const(1, "exponent")
    if exponent.size != 1:
        im.fail("Pow needs a scalar exponent")
    return im.add("pow", [im.tensor(ins[0])], {"exponent": float(exponent.reshape(-1)[0])})


@converter("Erf")
def _erf(im: Importer, a: dict, ins: list):
    """0.5 * x * (1 + erf(x / sqrt 2)), in the orders exporters write it, is one gelu node."""
    out = _gelu_pattern(im, ins[0])
    if out is None:
        im.fail("Erf is supported only inside the Gelu pattern x * 0.5 * (1 + erf(x / sqrt(2)))")
    return out


def _const_operand(im: Importer, node, value: float) -> str | None:
    """The other operand of a binary ``node`` whose one operand is the constant ``value``."""
    a, b = node.input
    for this, other in ((a, b), (b, a)):
        c = _peek_const(im, this)
        if c is not None and c.size == 1 and math.isclose(float(c.reshape(-1)[0]), value, rel_tol=1e-5):
            return other
    return None


def _peek_const(im: Importer, name: str) -> np.ndarray | None:
    """A constant, also one a later Constant node defines (a pattern looks ahead of the walk)."""
    if name in im.values:
        return im.const(name)
    producer = next((n for n in im.nodes if name in n.output), None)
    if producer is None or producer.op_type != "Constant":
        return None
    from .convert import attributes

    return CONVERTERS["Constant"](im, attributes(producer), [])


def _only_consumer(im: Importer, value: str, op_type: str):
    users = im.consumers.get(value, [])
    if len(users) == 1 and im.nodes[users[0]].op_type == op_type:
        return users[0]
    return None


def _gelu_pattern(im: Importer, erf_in: str):
    producer = next((n for n in im.nodes if erf_in in n.output), None)
    if producer is None or producer.op_type not in ("Div", "Mul"):
        return None
    k = math.sqrt(2) if producer.op_type == "Div" else 1 / math.sqrt(2)
    x = _const_operand(im, producer, k)
    add = _only_consumer(im, im.node.output[0], "Add")
    if x is None or add is None or _const_operand(im, im.nodes[add], 1.0) is None:
        return None
    mul = _only_consumer(im, im.nodes[add].output[0], "Mul")
    if mul is None:
        return None
    other = next(v for v in im.nodes[mul].input if v != im.nodes[add].output[0])
    absorbed = [add, mul]
    if other != x:  # (0.5 * x) * (1 + erf)
        half = next((n for n in im.nodes if other in n.output), None)
        if half is None or half.op_type != "Mul" or _const_operand(im, half, 0.5) != x:
            return None
        final = mul
    else:  # (x * (1 + erf)) * 0.5
        final = _only_consumer(im, im.nodes[mul].output[0], "Mul")
        if final is None or _const_operand(im, im.nodes[final], 0.5) is None:
            return None
        absorbed.append(final)
    im.skip.update(absorbed)
    gelu = im.add("gelu", [im.tensor(x)])
    im.values[im.nodes[final].output[0]] = gelu
    return gelu


# ------------------------------------------------------------ pooling and reductions


def _pool(im: Importer, a: dict, ins: list, op: str, extra: dict):
    if any(d != 1 for d in a.get("dilations", (1, 1))):
        im.fail("dilated pooling is not supported")
    x = im.tensor(ins[0])
    kernel = tuple(a["kernel_shape"])
    from .convert import _pads_2d

    strides = tuple(a.get("strides", (1, 1)))
    pads = _pads_2d(im, a, x, kernel, strides, (1, 1))
    if pads[:2] != pads[2:]:
        im.fail(f"pooling with asymmetric pads {pads} is not supported")
    attrs = {"kernel": kernel, "stride": strides, "padding": tuple(pads[:2]), "ceil_mode": bool(a.get("ceil_mode", 0))}
    return im.add(op, [x], {**attrs, **extra})


@converter("MaxPool")
def _max_pool(im: Importer, a: dict, ins: list):
    if len(im.node.output) > 1 and im.node.output[1]:
        im.fail("MaxPool with an Indices output is not supported")
    return _pool(im, a, ins, "max_pool2d", {})


@converter("AveragePool")
def _avg_pool(im: Importer, a: dict, ins: list):
    return _pool(im, a, ins, "avg_pool2d", {"count_include_pad": bool(a.get("count_include_pad", 0))})


@converter("GlobalAveragePool")
def _gap(im: Importer, a: dict, ins: list):
    return im.add("global_avg_pool", [im.tensor(ins[0])])


@converter("ReduceMean")
def _reduce_mean(im: Importer, a: dict, ins: list):
    x = im.tensor(ins[0])
    rank = len(im.shape(x))
    axes = a.get("axes")
    if axes is None and len(ins) > 1 and ins[1]:
        axes = im.need_const(1, "axes").tolist()
    if axes is None:
        im.fail("ReduceMean over all axes would reduce the batch")
    axes = sorted(int(ax) % rank for ax in axes)
    keep = bool(a.get("keepdims", 1))
    if rank == 4 and axes == [2, 3]:  # global average pooling, which the backends fuse and schedule
        pooled = im.add("global_avg_pool", [x])
        return pooled if keep else im.reshape_to(pooled, [BATCH_MARK, im.shape(x)[1]])
    return im.add("reduce_mean", [x], {"axes": tuple(axes), "keepdim": keep})


@converter("Softmax")
def _softmax(im: Importer, a: dict, ins: list):
    return im.add("softmax", [im.tensor(ins[0])], {"axis": a.get("axis", -1)})


# ------------------------------------------------------------ layout


@converter("Flatten")
def _flatten(im: Importer, a: dict, ins: list):
    x = im.tensor(ins[0])
    axis = a.get("axis", 1) % max(len(im.shape(x)), 1)
    if axis == 0:
        im.fail("Flatten with axis=0 folds the batch into the features, which resdsl cannot express")
    return im.add("flatten", [x], {"axis": axis})


@converter("Reshape")
def _reshape(im: Importer, a: dict, ins: list):
    target = im.need_const(1, "shape")
    if a.get("allowzero", 0) and 0 in target.tolist():
        im.fail("Reshape with allowzero=1 and a 0 in the shape is not supported")
    return im.reshape_to(im.tensor(ins[0]), target.tolist())


def _expanded_shape(im: Importer, x: int, axes: list[int]) -> list:
    shape = [BATCH_MARK if isinstance(d, str) else d for d in im.shape(x)]
    rank = len(shape) + len(axes)
    for ax in sorted(int(v) % rank for v in axes):
        shape.insert(ax, 1)
    return shape


@converter("Unsqueeze")
def _unsqueeze(im: Importer, a: dict, ins: list):
    axes = a.get("axes") or im.need_const(1, "axes").tolist()
    x = im.tensor(ins[0])
    return im.reshape_to(x, _expanded_shape(im, x, list(axes)))


@converter("Squeeze")
def _squeeze(im: Importer, a: dict, ins: list):
    x = im.tensor(ins[0])
    shape = list(im.shape(x))
    axes = a.get("axes") or (im.need_const(1, "axes").tolist() if len(ins) > 1 and ins[1] else None)
    axes = [int(v) % len(shape) for v in axes] if axes else [i for i, d in enumerate(shape) if d == 1]
    if any(shape[i] != 1 for i in axes):
        im.fail(f"Squeeze of axes {axes} that are not of size 1 in {tuple(shape)}")
    target = [BATCH_MARK if isinstance(d, str) else d for i, d in enumerate(shape) if i not in axes]
    return im.reshape_to(x, target)


@converter("Transpose")
def _transpose(im: Importer, a: dict, ins: list):
    x = im.tensor(ins[0])
    perm = tuple(a.get("perm", range(len(im.shape(x)) - 1, -1, -1)))
    return x if perm == tuple(range(len(perm))) else im.add("transpose", [x], {"perm": perm})


@converter("Concat")
def _concat(im: Importer, a: dict, ins: list):
    return im.add("concat", [im.tensor(n) for n in ins], {"axis": a["axis"]})


@converter("Slice")
def _slice(im: Importer, a: dict, ins: list):
    x = im.tensor(ins[0])
    shape = im.shape(x)
    starts, ends = im.need_const(1, "starts").tolist(), im.need_const(2, "ends").tolist()
    axes = im.need_const(3, "axes").tolist() if len(ins) > 3 and ins[3] else list(range(len(starts)))
    steps = im.need_const(4, "steps").tolist() if len(ins) > 4 and ins[4] else [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = int(axis) % len(shape)
        size = shape[axis]
        if isinstance(size, str):
            im.fail("Slice of the batch dimension is not supported")
        if step <= 0:
            im.fail("Slice with a negative step is not supported")
        lo, hi = slice(int(start), int(min(end, 2**62)), 1).indices(size)[:2]
        if (lo, hi) != (0, size) or step != 1:
            x = im.add("slice", [x], {"axis": axis, "start": lo, "end": hi, "step": int(step)})
    return x


@converter("Gather")
def _gather(im: Importer, a: dict, ins: list):
    table, indices = im.const(ins[0]), im.const(ins[1])
    axis = a.get("axis", 0)
    if table is not None and table.ndim == 2 and axis == 0 and indices is None:
        layer = im.layer(ins[0])
        weight = im.param(table, f"{layer}.weight", ins[0])
        return im.add("embedding", [im.tensor(ins[1]), weight], None, layer)
    if indices is not None and indices.ndim == 0:  # x[:, i]: a slice, then drop the axis
        x = im.tensor(ins[0])
        shape = im.shape(x)
        axis %= len(shape)
        i = int(indices) % shape[axis]
        sliced = im.add("slice", [x], {"axis": axis, "start": i, "end": i + 1, "step": 1})
        target = [BATCH_MARK if isinstance(d, str) else d for k, d in enumerate(shape) if k != axis]
        return im.reshape_to(sliced, target)
    im.fail("Gather is supported as an embedding lookup (constant table) or a constant scalar index")


_RESIZE = {
    ("nearest", "asymmetric"): ("nearest", False),
    ("linear", "half_pixel"): ("bilinear", False),
    ("linear", "pytorch_half_pixel"): ("bilinear", False),
    ("linear", "align_corners"): ("bilinear", True),
}


@converter("Resize", "Upsample")
def _resize(im: Importer, a: dict, ins: list):
    x = im.tensor(ins[0])
    h, w = im.shape(x)[2:]
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest" and a.get("nearest_mode", "round_prefer_floor") != "floor":
        im.fail("nearest Resize is supported with nearest_mode='floor' (PyTorch's)")
    key = (mode, "asymmetric" if mode == "nearest" else ctm)
    if key not in _RESIZE or (mode == "nearest" and ctm != "asymmetric"):
        im.fail(f"Resize mode {mode!r} with coordinate_transformation_mode {ctm!r} is not supported")
    sizes = im.const(ins[3]) if len(ins) > 3 and ins[3] else None
    if sizes is not None and sizes.size:
        size = tuple(int(v) for v in sizes.tolist()[-2:])
    else:
        scales = im.need_const(2, "scales").tolist()[-2:]
        size = (int(math.floor(h * scales[0])), int(math.floor(w * scales[1])))
    resample, corners = _RESIZE[key]
    return im.add("resize", [x], {"size": size, "mode": resample, "align_corners": corners})

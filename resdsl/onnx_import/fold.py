"""Constant folding of the shape arithmetic export tools leave behind.

``x.view(x.size(0), -1)`` exports as Shape -> Gather -> Unsqueeze -> Concat -> Reshape. With static
sizes every one of these is a constant, except the batch: Shape gives it as ``BATCH_MARK``, which
the ops below carry through unchanged (gathered, concatenated, cast) and a Reshape turns into 0
("copy the input's dimension"). Arithmetic on the mark would give a size that depends on the batch,
which a graph with a symbolic batch cannot hold: ``check_marks`` refuses it.
"""

from __future__ import annotations

import numpy as np

BATCH_MARK = -(2**40)  # the batch size inside a folded shape tensor

_DTYPES = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
}


def _axes(attrs: dict, inputs: list, index: int, rank: int) -> list[int] | None:
    axes = attrs.get("axes")
    if axes is None and len(inputs) > index and inputs[index] is not None:
        axes = inputs[index].tolist()
    return None if axes is None else [int(a) % rank for a in np.atleast_1d(axes)]


def _slice(x, starts, ends, axes=None, steps=None):
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(min(max(e, -(2**62)), 2**62)), int(st))
    return x[tuple(index)]


def _unsqueeze(x, attrs, inputs):
    rank = x.ndim + len(_axes(attrs, inputs, 1, 10**6) or [])
    out = x
    for a in sorted(_axes(attrs, inputs, 1, rank)):
        out = np.expand_dims(out, a)
    return out


def _squeeze(x, attrs, inputs):
    axes = _axes(attrs, inputs, 1, x.ndim)
    return np.squeeze(x, axis=tuple(axes) if axes is not None else None)


def _reshape(x, shape):
    target = [x.shape[i] if d == 0 else int(d) for i, d in enumerate(shape.tolist())]
    return x.reshape(target)


def _range(start, limit, delta):
    return np.arange(start.item(), limit.item(), delta.item()).astype(start.dtype)


FOLDERS = {
    "Identity": lambda a, x: x,
    "Cast": lambda a, x: x.astype(_DTYPES[a["to"]]),
    "Gather": lambda a, x, i: np.take(x, i, axis=a.get("axis", 0)),
    "Unsqueeze": lambda a, x, *r: _unsqueeze(x, a, [x, *r]),
    "Squeeze": lambda a, x, *r: _squeeze(x, a, [x, *r]),
    "Concat": lambda a, *xs: np.concatenate([np.atleast_1d(x) for x in xs], axis=a["axis"]),
    "Slice": lambda a, x, *r: _slice(x, *(v.tolist() for v in r)),
    "Reshape": lambda a, x, s: _reshape(x, s),
    "Flatten": lambda a, x: x.reshape(int(np.prod(x.shape[: a.get("axis", 1)])), -1),
    "Transpose": lambda a, x: np.transpose(x, a.get("perm")),
    "Add": lambda a, x, y: x + y,
    "Sub": lambda a, x, y: x - y,
    "Mul": lambda a, x, y: x * y,
    "Div": lambda a, x, y: x // y if np.issubdtype(x.dtype, np.integer) else x / y,
    "Neg": lambda a, x: -x,
    "Sqrt": lambda a, x: np.sqrt(x),
    "Pow": lambda a, x, y: np.power(x, y),
    "Equal": lambda a, x, y: np.equal(x, y),
    "Where": lambda a, c, x, y: np.where(c, x, y),
    "Expand": lambda a, x, s: x * np.ones(s.tolist(), dtype=x.dtype),
    "ConstantOfShape": lambda a, s: np.full(s.tolist(), a["value"].reshape(-1)[0] if "value" in a else 0.0),
    "Range": lambda a, start, limit, delta: _range(start, limit, delta),
    "Shape": lambda a, x: np.array(x.shape, np.int64),
}
# Ops that only fold: meaningful in resdsl's graphs only when every input is a constant.
FOLD_ONLY = ("Cast", "Neg", "Sqrt", "Equal", "Where", "Expand", "ConstantOfShape", "Range", "Shape")


def fold(op_type: str, attrs: dict, inputs: list) -> np.ndarray:
    """Evaluate ``op_type`` on constant inputs (None for an omitted optional input)."""
    args = list(inputs)
    while args and args[-1] is None:
        args.pop()
    return np.asarray(FOLDERS[op_type](attrs, *args))


def check_marks(value: np.ndarray) -> bool:
    """False when a batch mark went through arithmetic (a size that depends on the batch)."""
    if not np.issubdtype(value.dtype, np.integer):
        return True
    odd = (value <= BATCH_MARK // 2) & (value != BATCH_MARK)
    return not bool(np.any(odd))

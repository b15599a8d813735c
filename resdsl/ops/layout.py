"""Layout: flatten, reshape, transpose, concat, pad — data movement, no arithmetic."""

from __future__ import annotations

import numpy as np

from ..registry import REQUIRED, Attr, ShapeError, register
from ..shapes import fmt
from .common import N

X4 = (N, 4, 9, 9)


@register(
    "flatten",
    "collapse the axes from `axis` on into one",
    inputs=("x",),
    attrs={"axis": 1},
    cases=[("flatten", [X4], {"axis": 1}, {}), ("flatten_axis2", [X4], {"axis": 2}, {})],
)
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


@register(
    "reshape",
    "reshape; 0 copies the input's dim, -1 is inferred",
    inputs=("x",),
    attrs={"shape": REQUIRED},
    cases=[("reshape", [(N, 6, 4)], {"shape": (0, 3, -1, 4)}, {})],
)
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


@register(
    "transpose",
    "permute axes",
    inputs=("x",),
    attrs={"perm": REQUIRED},
    cases=[("transpose", [(N, 6, 4)], {"perm": (0, 2, 1)}, {})],
)
class Transpose:
    @staticmethod
    def infer(shapes, a):
        x, perm = shapes[0], tuple(a["perm"])
        if sorted(perm) != list(range(len(x))):
            raise ShapeError(f"transpose: {perm} is not a permutation of {len(x)} axes")
        return tuple(x[p] for p in perm)

    reference = staticmethod(lambda x, *, perm: np.ascontiguousarray(x.transpose(perm)))


@register(
    "concat",
    "join along an axis",
    inputs=("x*",),
    attrs={"axis": 1},
    cases=[("concat", [X4, (N, 2, 9, 9)], {"axis": 1}, {})],
)
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
    "pad",
    "zero padding; pads = (begin_0, ..., begin_k, end_0, ..., end_k)",
    inputs=("x",),
    attrs={"pads": REQUIRED},
    cases=[("pad", [X4], {"pads": (0, 1, 0, 2, 0, 2, 1, 0)}, {})],
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


def _slice_attr(value) -> int:
    if isinstance(value, bool) or int(value) != value:
        raise ValueError("must be an integer")
    return int(value)


@register(
    "slice",
    "x[start:end:step] along one axis; start/end already within [0, size] (the DSL normalises Python's rules)",
    inputs=("x",),
    attrs={
        "axis": Attr(REQUIRED, _slice_attr),
        "start": Attr(REQUIRED, _slice_attr),
        "end": Attr(REQUIRED, _slice_attr),
        "step": Attr(1, _slice_attr),
    },
    cases=[
        ("slice_channels", [X4], {"axis": 1, "start": 1, "end": 3}, {}),
        ("slice_step", [X4], {"axis": 3, "start": 0, "end": 9, "step": 2}, {}),
    ],
)
class Slice:
    @staticmethod
    def infer(shapes, a):
        x = shapes[0]
        axis, start, end, step = a["axis"], a["start"], a["end"], a["step"]
        if not 0 <= axis < len(x):
            raise ShapeError(f"slice: axis {axis} out of range for {fmt(x)}")
        if isinstance(x[axis], str):
            raise ShapeError("slice cannot cut the batch dimension")
        if step <= 0 or not 0 <= start < end <= x[axis]:
            raise ShapeError(f"slice: [{start}:{end}:{step}] of an axis of {x[axis]} is empty or out of range")
        return tuple((end - start + step - 1) // step if i == axis else d for i, d in enumerate(x))

    @staticmethod
    def reference(x, *, axis, start, end, step):
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, end, step)
        return np.ascontiguousarray(x[tuple(index)])


def _index_dtype(dtypes: list[str], a: dict) -> str:
    return dtypes[1]


@register(
    "embedding",
    "weight[indices]: rows of a (num, dim) table looked up by integer indices (torch.nn.Embedding)",
    inputs=("indices", "weight"),
    dtype=_index_dtype,
    cases=[("embedding", [("int64", (N, 7)), "w"], {}, {"w": (11, 6)})],
)
class Embedding:
    @staticmethod
    def infer(shapes, a):
        idx, w = shapes
        if len(w) != 2:
            raise ShapeError(f"embedding: the table must be (num, dim), got {fmt(w)}")
        return tuple(idx) + (w[1],)

    reference = staticmethod(lambda idx, w: np.ascontiguousarray(w[idx]))

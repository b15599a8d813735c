"""Layout: flatten, reshape, transpose, concat, pad — data movement, no arithmetic."""

from __future__ import annotations

import numpy as np

from ..registry import REQUIRED, ShapeError, register
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

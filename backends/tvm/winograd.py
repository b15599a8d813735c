"""Winograd convolution for the ``llvm`` target: 3x3 stride-1 convs with fewer multiplications.

F(m x m, 3 x 3) computes an ``m x m`` output tile from an ``a x a`` input tile
(``a = m + 2``) with ``a^2`` multiplications per (input, output) channel pair
instead of ``9 m^2``: 2.25x fewer for F(2, 3), 4x fewer for F(4, 3) (Lavin and
Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)::

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise, per tile)

Summed over input channels the elementwise product is ``a^2`` independent matrix
products, one per tile position ``e = (xi, nu)``::

    V[n, e, t, c]  = (B^T d_t B)[xi, nu]                input transform, per tile t
    U[e, c, k]     = (G g_ck G^T)[xi, nu]               weights: at compile time
    M[n, e, t, k]  = sum_c V[n, e, t, c] * U[e, c, k]   batched GEMM
    Y[n, h, w, k]  = (A^T M_t A)[h % m, w % m]          output transform

``winograd_passes(target)`` rewrites each ``relax.nn.conv2d`` the rule
(``use_winograd``) accepts into exactly that: U is a new constant (computed in
float64, stored float32); the input transform is a TE function with its own small
schedule (parallel tiles, the ``a^2`` outputs unrolled so their coefficients are
constants and LLVM shares the partial sums, channels vectorised) marked opaque so
nothing fuses into it; the GEMM is a ``relax.matmul`` with the output channel last
and a constant right operand, which resdsl's Kernel rule register-tiles and whose
weights it packs at compile time; the output transform is a plain injective TE
function, so FuseOps fuses the conv's epilogue (bias, residual add, relu) into it
and the Elementwise rule vectorises the result over output channels. Tiles that
run past an odd output size (7x7 with m = 4) read zero padding and are cropped by
the output transform. ``use_winograd`` picks m per shape (today F(4, 3) or none).

It runs after ``ConvertLayout`` (NHWC activations, HWIO weights) and a
``FoldConstant`` that turns the weight's permutation into a constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mutator import mutator_pass
from .target import lanes_of

# Lavin's F(2, 3) and F(4, 3) (interpolation points 0, +-1, +-2, infinity).
_MATRICES = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}


def matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B^T, G, A^T)`` of F(m, 3) in float64."""
    bt, g, at = _MATRICES[m]
    return np.array(bt, np.float64), np.array(g, np.float64), np.array(at, np.float64)


@dataclass(frozen=True)
class ConvShape:
    """A 3x3 stride-1 NHWC convolution, as the rule sees it."""

    height: int  # output rows
    width: int  # output columns
    in_channels: int
    out_channels: int


MIN_TILES = 49  # 4x4 output tiles per image: 28x28 and up


def use_winograd(shape: ConvShape) -> int | None:
    """The tile size ``m`` of F(m x m, 3 x 3) for ``shape``, or None to keep the direct conv.

    F(4, 3) does 4x fewer multiplications than the direct kernel, F(2, 3) 2.25x; but
    their GEMM streams ``(m + 2)^2 / 9`` times the direct weights (4x and 1.8x) and
    uses each weight once per output tile, so with few tiles per image it is bound
    by memory, not by FMAs. Measured on AVX-512, 2 threads, batch 1
    (benchmarks/winograd_shapes.py --m 4 / --m 2, conv + bias + relu, time / direct):

    ===================  =======  =======
    HxW, C->K            F(4, 3)  F(2, 3)
    ===================  =======  =======
    56x56, 64->64        0.88     1.11
    28x28, 128->128      0.59     0.93
    14x14, 256->256      0.65     0.71
    7x7, 512->512        1.09     0.82
    56x56, 32->32        0.93     1.26
    28x28, 32->32        0.98     1.19
    56x56, 16->16        1.21     1.50
    ===================  =======  =======

    Those are kernels timed alone, their weights warm in cache. Inside a whole network
    the weights come cold from memory (resnet50 streams ~100 MB of them per batch-1
    inference), and there the 7x7x512 F(2, 3) GEMM took 1.42 ms where the direct conv
    takes ~1.0 (its 16.8 MB of transformed weights against 9.4 MB; VM-instrumented
    resnet50, 2 threads), while F(4, 3) at 56x56 and 28x28 kept its gain.

    At 14x14 (16 tiles) the F(4, 3) GEMM, bound by its 9.4 MB of cold weights, took
    0.91 ms plus 0.1 ms of transforms against ~1.0 ms direct: no gain, and its
    transformed weights (4x the direct ones) took compiling resnet152, with 36 such
    convs, from 2.5 to 3.9 GiB.

    Hence: F(4, 3) from 49 tiles of 4x4 (56x56 and 28x28); else direct.
    Fewer than 32 input or output channels: direct, as the transforms (~``(m + 2)^2``
    adds per input and output element) and the 2.25x larger intermediates outweigh the
    saved multiplications (at 32 the gain is within noise). F(2, 3) stays available
    (``input_transform``/``output_transform`` take any ``m``) for when it pays.
    """
    if min(shape.in_channels, shape.out_channels) < 32:
        return None
    if -(-shape.height // 4) * -(-shape.width // 4) >= MIN_TILES:
        return 4
    return None


# ---------------------------------------------------------------- the TE functions


def _sparse_sum(terms):
    """``sum(c * x)`` over the non-zero coefficients, with +-1 as add/subtract."""
    out = None
    for c, x in terms:
        if c == 0:
            continue
        t = x if c == 1 else -x if c == -1 else x * float(c)
        out = t if out is None else out + t
    return out


def _pick(var, options):
    """``options[var]`` for a loop variable ``var``: constant-folded once the loop is unrolled."""
    from tvm import tirx

    out = options[-1]
    for k in range(len(options) - 2, -1, -1):
        out = tirx.Select(var == k, options[k], out)
    return out


def input_transform(x, m: int, pad: tuple[int, int], tiles: tuple[int, int]):
    """``V[n, xi * a + nu, t, c] = (B^T d_t B)[xi, nu]`` for the padded tile ``d_t`` of ``x`` (NHWC).

    Three stages: the tile ``d`` (zero outside ``x``), the rows ``R = B^T d`` and ``V = R B``.
    The coefficients are picked by the row or column index: constants once that
    loop is unrolled (``schedule_input_transform``).
    """
    from tvm import te, tirx

    bt = matrices(m)[0]
    a = m + 2
    n_, h_, w_, c_ = x.shape
    tiles_w = tiles[1]

    def tile(n, t, i, j, c):
        h, w = (t // tiles_w) * m + i - pad[0], (t % tiles_w) * m + j - pad[1]
        inside = tirx.all(h >= 0, h < h_, w >= 0, w < w_)
        return tirx.if_then_else(inside, x[n, h, w, c], tirx.const(0.0, "float32"))

    d = te.compute((n_, tiles[0] * tiles_w, a, a, c_), tile, name="winograd_tile")
    rows = te.compute(
        d.shape,
        lambda n, t, xi, j, c: _pick(
            xi, [_sparse_sum((bt[r, i], d[n, t, i, j, c]) for i in range(a)) for r in range(a)]
        ),
        name="winograd_rows",
    )
    return te.compute(
        (n_, a * a, d.shape[1], c_),
        lambda n, e, t, c: _pick(
            e % a, [_sparse_sum((bt[k, j], rows[n, t, e // a, j, c]) for j in range(a)) for k in range(a)]
        ),
        name="winograd_input",
    )


def _branch(var, options):
    """``options[var]`` as ``if_then_else``: only the chosen option is evaluated (``Select`` would
    evaluate all of them). ``var`` does not depend on the vectorised loop, so it is one branch."""
    from tvm import tirx

    out = options[-1]
    for k in range(len(options) - 2, -1, -1):
        out = tirx.if_then_else(var == k, options[k], out)
    return out


def output_transform(mm, m: int, size: tuple[int, int], tiles_w: int):
    """``Y[n, h, w, k] = (A^T M_t A)[h % m, w % m]`` for the tile ``t`` holding ``(h, w)``.

    One injective function over the NHWC output (cropped to ``size``), so FuseOps fuses
    the conv's epilogue into it; the Elementwise rule vectorises it over ``k``. Each
    output branches to its ``(h % m, w % m)`` case, a sparse sum with constant weights.
    """
    from tvm import te

    at = matrices(m)[2]
    a = m + 2
    n_, _, _, k_ = mm.shape

    def body(n, h, w, k):
        t = (h // m) * tiles_w + w // m
        i, j = h % m, w % m

        def leaf(ii, jj):
            cols = [_sparse_sum((at[jj, nu], mm[n, xi * a + nu, t, k]) for nu in range(a)) for xi in range(a)]
            return _sparse_sum((at[ii, xi], cols[xi]) for xi in range(a))

        return _branch(i, [_branch(j, [leaf(ii, jj) for jj in range(m)]) for ii in range(m)])

    return te.compute((n_, size[0], size[1], k_), body, name="winograd_output")


def schedule_input_transform(func, lanes: int):
    """Parallel over (batch, tile, channel block); each stage's tile indices unrolled (their
    coefficients become constants), channels vectorised; the tile and rows stay in registers.

    Marked scheduled and opaque (``op_pattern`` 8): as an injective function FuseOps
    would fuse it with the previous Winograd conv's output transform, and the
    Elementwise rule would then recompute each input element once per use.
    """
    from tvm import s_tir

    from .rules.common import divisor, int_extent

    sch = s_tir.Schedule(func)
    block = sch.get_sblock("winograd_input")
    n, e, t, c = sch.get_loops(block)
    vec = divisor(int_extent(sch.get(c).extent), lanes, power_of_two=True)
    if vec > 1:
        c, c_i = sch.split(c, [None, vec])
        sch.reorder(n, t, c, e, c_i)
    else:
        sch.reorder(n, t, c, e)
    outer = sch.fuse(n, t, c)
    sch.parallel(outer)
    sch.unroll(e)
    stages = [sch.get_sblock(name) for name in ("winograd_rows", "winograd_tile")]
    for stage in stages:
        sch.compute_at(stage, outer)
        sch.set_scope(stage, 0, "local")
        _, i, j, *lanes_loop = sch.get_loops(stage)
        sch.unroll(i)
        sch.unroll(j)
        if vec > 1:
            sch.vectorize(lanes_loop[0])
    if vec > 1:
        sch.vectorize(c_i)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True).with_attr("op_pattern", 8)


def weight_transform(w_hwio: np.ndarray, m: int) -> np.ndarray:
    """``U[xi * a + nu, c, k] = (G g_ck G^T)[xi, nu]`` in float64, stored float32."""
    g = matrices(m)[1]
    u = np.einsum("xi,ijck,yj->xyck", g, w_hwio.astype(np.float64), g, optimize=True)
    a = m + 2
    return np.ascontiguousarray(u.reshape(a * a, *w_hwio.shape[2:]), dtype=np.float32)


# ---------------------------------------------------------------- the rewrite


def _static(dims) -> list[int] | None:
    from tvm import tirx

    return [int(d.value) for d in dims] if all(isinstance(d, tirx.IntImm) for d in dims) else None


def conv_shape(call) -> ConvShape | str:
    """The shape of a conv2d call the rewrite can handle, or why it cannot."""
    from tvm import ir

    attrs = call.attrs
    if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) != ("NHWC", "HWIO", "NHWC"):
        return "not NHWC/HWIO (ConvertLayout did not run)"
    if [int(s) for s in attrs.strides] != [1, 1] or [int(d) for d in attrs.dilation] != [1, 1]:
        return "strided or dilated"
    if int(attrs.groups) != 1:
        return "grouped"
    x, w = call.args
    if not isinstance(w, ir.Constant):
        return "weight is not a constant"
    wshape = list(w.value.shape)
    if wshape[:2] != [3, 3]:
        return "kernel is not 3x3"
    if str(call.ty.dtype) != "float32":
        return "not float32"
    out = _static(call.ty.shape.values[1:])
    if out is None or _static(x.ty.shape.values[1:]) is None:
        return "spatial size is symbolic"
    return ConvShape(out[0], out[1], wshape[2], wshape[3])


def winograd_passes(target, enabled: bool = True) -> list:
    """FoldConstant (weights become plain HWIO constants), then the Winograd rewrite."""
    from tvm import relax

    if not enabled:
        return []
    return [relax.transform.FoldConstant(), _rewrite_pass(lanes_of(target))]


def _rewrite_pass(lanes: int):
    from tvm import relax
    from tvm.relax import PyExprMutator, expr_functor

    @expr_functor.mutator
    class _Winograd(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if getattr(call.op, "name", None) != "relax.nn.conv2d":
                return call
            shape = conv_shape(call)
            m = use_winograd(shape) if isinstance(shape, ConvShape) else None
            return call if m is None else self.rewrite(call, shape, m)

        def rewrite(self, call, shape: ConvShape, m: int):
            x, w = call.args
            pad = (int(call.attrs.padding[0]), int(call.attrs.padding[1]))
            tiles = (-(-shape.height // m), -(-shape.width // m))
            bb = self.builder_
            transform = bb.call_te(input_transform, x, m, pad, tiles, primfunc_name_hint="winograd_input")
            self.schedule(transform.args[0])
            v = bb.emit(transform)
            u = relax.const(weight_transform(w.value.numpy(), m), "float32")
            mm = bb.emit(relax.op.matmul(v, u))
            return bb.call_te(
                output_transform, mm, m, (shape.height, shape.width), tiles[1], primfunc_name_hint="winograd_output"
            )

        def schedule(self, gvar):
            func = self.builder_.get()[gvar]
            if func.attrs is None or "tirx.is_scheduled" not in func.attrs:
                self.builder_.update_func(gvar, schedule_input_transform(func, lanes))

    return mutator_pass("ResdslWinograd", _Winograd)

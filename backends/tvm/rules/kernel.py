"""The CPU rule for multiply-accumulate kernels (conv2d, fused_conv, linear, matmul): an
output-stationary register tile, and the tile model (``Tile``, ``MacShape``, ``choose_tile``)
that tile books (``tiles``) record measurements against."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tvm.s_tir.dlight.base import ScheduleRule

from .common import block_index, divisor, has_root, int_extent, mac_reduction, operand, parallel_vectorize

# Accumulator registers a kernel tile may use: AVX-512 has 32 vector registers,
# AVX2 16; the rest hold the weight vectors and the broadcast input.
_ACC_REGISTERS = {16: 28, 8: 12, 4: 12}
MAX_ROWS = 14


def schedule_kernel(func, lanes: int, tiles: Mapping[str, Tile] | None = None):
    """Register-tile the multiply-accumulate PrimFunc ``func``; None when it has none.

    Loops, outer to inner: the outer spatial loops and the outer tiles of the two
    innermost output axes (fused, parallel); every reduction loop; then ``rows``
    (unrolled) x ``reg`` (unrolled) x ``lanes`` (vectorised) accumulators. For an
    NHWC conv the rows are output columns and the vector is output channels: each
    step of the reduction broadcasts one input value and does ``rows x reg`` FMAs.
    ``tiles`` maps ``MacShape.key()`` to a measured tile (``resdsl tune --method tiles``
    and the shipped tile books); a kernel it does not cover gets ``choose_tile``'s.
    """
    from tvm import s_tir, tirx

    prepared = _prepare_mac(func, lanes)
    if prepared is None:
        return None
    sch, mac, blocks = prepared
    pos = block_index(sch, blocks, mac)
    producers, consumers = blocks[:pos], blocks[pos + 1 :]
    try:
        for b in consumers:
            if any(iv.iter_type != tirx.IterVar.DataPar for iv in sch.get(b).iter_vars):
                return None
        for b in consumers[:-1]:
            sch.compute_inline(b)
        tile_loop, _ = _tile_mac(
            sch, mac, consumers[-1] if consumers else None, lanes, _is_constant_weight(func, sch.get(mac)), tiles
        )
        for b in producers:
            _pad_per_tile(sch, b, tile_loop, lanes)
    except (s_tir.ScheduleError, _NotTiled):
        return None
    return sch


def _prepare_mac(func, lanes: int):
    """``(schedule, mac block, root blocks)`` with the MAC's iteration space padded (``_pad_mac``);
    None when ``func`` has no single multiply-accumulate."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root")) if has_root(sch) else []
    macs = [b for b in blocks if mac_reduction(sch, b) is None]
    if len(macs) != 1:
        return None
    (mac,) = macs
    try:
        if _pad_mac(sch, mac, lanes, _is_constant_weight(func, sch.get(mac))):
            blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except s_tir.ScheduleError:
        return None
    return sch, mac, blocks


def kernel_shape(func, lanes: int) -> MacShape | None:
    """The ``MacShape`` that ``schedule_kernel`` will tile in ``func`` (None: not a kernel)."""
    prepared = _prepare_mac(func, lanes)
    try:
        return None if prepared is None else mac_shape(prepared[0], prepared[1])
    except _NotTiled:
        return None


def padded_rows(rows: int) -> int:
    """The row tile for ``rows`` output rows that no good tile divides (197 tokens): the one
    in 7..MAX_ROWS wasting the fewest padded rows, the larger on ties."""
    return min(range(MAX_ROWS, 6, -1), key=lambda r: -(-rows // r) * r)


def _pad_mac(sch, mac, lanes: int, constant_weight: bool) -> bool:
    """Pad the iteration space of ``mac`` when its last two axes tile badly (a prime number of
    tokens): rows up to a multiple of ``padded_rows``, columns up to whole vectors.

    ``pad_einsum`` adds zero-padded copies of the operands (small: one tile's rows or
    columns each, once ``_pad_per_tile`` moves them into the tile) and an output copy
    that the epilogue absorbs; without it the tile degenerates to one row of scalars.
    Constant weights keep their columns: their packing needs the original shape.
    Returns whether it padded.
    """
    from tvm import tirx

    stmt = sch.get(mac)
    spatial = [iv for iv in stmt.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    rows, cols = int_extent(spatial[-2].dom.extent), int_extent(spatial[-1].dom.extent)
    padding = [1] * len(stmt.iter_vars)
    if rows is not None and rows > MAX_ROWS and divisor(rows, MAX_ROWS) < 4:
        padding[len(spatial) - 2] = padded_rows(rows)
    if cols is not None and not constant_weight and cols > lanes and cols % lanes:
        padding[len(spatial) - 1] = lanes
    if all(p == 1 for p in padding):
        return False
    sch.pad_einsum(mac, padding)
    return True


def _is_constant_weight(func, stmt) -> bool:
    """Whether the product's second operand is a parameter Relax binds to a constant
    (AttachAttrLayoutFreeBuffers lists those), so its layout is ours to choose."""
    from tvm import ir

    load = operand(stmt.body.value.b.b)
    free = func.attrs.get("layout_free_buffers") if func.attrs is not None else None
    if not free or not isinstance(load, ir.TensorLoad):
        return False
    return any(func.params[int(i)].same_as(load.source) for i in free)


@dataclass(frozen=True)
class Tile:
    """One register tile: ``rows x reg`` vectors of ``vec`` lanes, and the outer loop order."""

    rows: int
    reg: int
    vec: int
    channels_outer: bool  # iterate output-channel tiles outside spatial tiles (weights stay in cache)


def choose_tile(rows: int | None, cols: int, lanes: int, outer: int, weight: int, data: int) -> Tile:
    """The tile that fills the accumulator registers, as many rows as possible first.

    Each reduction step loads ``rows`` broadcasts and ``reg`` weight vectors for
    ``rows * reg`` FMAs (measured on AVX-512: 14x2 beats 7x4 at 14x14 outputs, 7x4
    beats 7x2 at 7x7). The loop order re-reads the smaller total: the weights once
    per spatial tile, or the input once per channel tile (``outer`` spatial
    iterations, ``weight`` and ``data`` element counts of the two operands).
    """
    vec = divisor(cols, lanes, power_of_two=True)
    budget = _ACC_REGISTERS.get(lanes, 12)
    row = divisor(rows, min(MAX_ROWS, budget)) if rows is not None else 1
    reg = next(r for r in (4, 2, 1) if cols % (r * vec) == 0 and row * r <= max(budget, row))
    spatial_tiles = outer * ((rows or 1) // row)
    channel_tiles = cols // (reg * vec)
    return Tile(row, reg, vec, channels_outer=channel_tiles * data < spatial_tiles * weight)


@dataclass(frozen=True)
class MacShape:
    """The iteration space of one multiply-accumulate kernel: all a tile choice depends on.

    Its ``key()`` names a kernel in a tile book independently of TVM's function names
    and hashes (which change with the epilogue and between TVM versions): the
    spatial extents, the reduction extents and the operand sizes (which tell a
    stride-2 conv from a stride-1 one of the same output).
    """

    outer: tuple[int | str, ...]  # spatial extents before the last two; "N" where symbolic
    rows: int | None
    cols: int
    reduction: tuple[int | str, ...]
    data: int
    weight: int

    def key(self) -> str:
        def dims(values) -> str:
            return "x".join(str(v) for v in values)

        return f"{dims(self.outer)}/{self.rows}x{self.cols}/r{dims(self.reduction)}/d{self.data}/w{self.weight}"

    @property
    def outer_count(self) -> int:
        return math.prod(v for v in self.outer if isinstance(v, int))


def mac_shape(sch, mac) -> MacShape:
    from tvm import tirx

    stmt = sch.get(mac)
    spatial = [iv for iv in stmt.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    reduction = [iv for iv in stmt.iter_vars if iv.iter_type != tirx.IterVar.DataPar]

    def extent(iv) -> int | str:
        value = int_extent(iv.dom.extent)
        return "N" if value is None else value

    cols = int_extent(spatial[-1].dom.extent)
    if cols is None:
        raise _NotTiled()
    term = stmt.body.value.b
    return MacShape(
        outer=tuple(extent(iv) for iv in spatial[:-2]),
        rows=int_extent(spatial[-2].dom.extent),
        cols=cols,
        reduction=tuple(extent(iv) for iv in reduction),
        data=_elements(operand(term.a)),
        weight=_elements(operand(term.b)),
    )


def default_tile(shape: MacShape, lanes: int) -> Tile:
    return choose_tile(shape.rows, shape.cols, lanes, shape.outer_count, shape.weight, shape.data)


def tile_fits(tile: Tile, shape: MacShape, lanes: int) -> bool:
    """Whether ``tile`` divides ``shape`` and fits the vector unit (a tile book may be stale)."""
    return (
        tile.vec == divisor(shape.cols, lanes, power_of_two=True)
        and shape.cols % (tile.reg * tile.vec) == 0
        and (shape.rows or 1) % tile.rows == 0
    )


def tile_candidates(shape: MacShape, lanes: int) -> list[Tile]:
    """The tiles worth measuring for ``shape``: every row count dividing the rows and register
    count dividing the columns that uses between a third of and all the accumulator
    registers, in both loop orders; the default tile first."""
    vec = divisor(shape.cols, lanes, power_of_two=True)
    budget = _ACC_REGISTERS.get(lanes, 12)
    rows = shape.rows or 1
    row_options = [r for r in range(1, min(rows, budget) + 1) if rows % r == 0]
    regs = [r for r in (1, 2, 3, 4, 6, 8) if shape.cols % (r * vec) == 0]
    fits = [(r, g) for r in row_options for g in regs if r * g <= budget]
    best = max(r * g for r, g in fits)
    chosen = [(r, g) for r, g in fits if r * g * 3 >= min(best, budget)]
    default = default_tile(shape, lanes)
    tiles = [Tile(r, g, vec, order) for r, g in chosen for order in (False, True)]
    return [default] + [t for t in tiles if t != default]


def _elements(expr) -> int:
    """Elements of the buffer ``expr`` loads from (0 when it is not a plain load)."""
    from tvm import ir

    if not isinstance(expr, ir.TensorLoad):
        return 0
    return math.prod(int_extent(d) or 1 for d in expr.source.ty.shape)


def _tile_mac(sch, mac, epilogue, lanes: int, pack: bool, tiles: Mapping[str, Tile] | None = None, depth: int = 1):
    """Tile ``mac`` (see ``schedule_kernel``); returns the parallel tile loop and the vector loop.

    ``depth`` > 1 (the int8 rule: 4) splits the innermost reduction loop by ``depth`` and puts
    that part inside the vector loop, packing the weights to match, for the caller to
    tensorize the ``lanes x depth`` nest into one dot-product instruction; the vector loop is
    then left unvectorised."""
    from tvm import tirx

    stmt = sch.get(mac)
    nspatial = sum(iv.iter_type == tirx.IterVar.DataPar for iv in stmt.iter_vars)
    loops = sch.get_loops(mac)
    spatial, reduction = loops[:nspatial], loops[nspatial:]
    shape = mac_shape(sch, mac)
    tile = (tiles or {}).get(shape.key())
    if tile is None or not tile_fits(tile, shape, lanes):
        tile = default_tile(shape, lanes)
    term = stmt.body.value.b
    c_o, c_r, c_v = sch.split(spatial[-1], [None, tile.reg, tile.vec])
    r_o, r_i = sch.split(spatial[-2], [None, tile.rows])
    outer_loops = [*spatial[:-2], r_o]
    outer_loops = [c_o, *outer_loops] if tile.channels_outer else [*outer_loops, c_o]
    if depth > 1:
        k_o, k_i = sch.split(reduction[-1], [None, depth])
        sch.reorder(*outer_loops, *reduction[:-1], k_o, r_i, c_r, c_v, k_i)
    else:
        sch.reorder(*outer_loops, *reduction, r_i, c_r, c_v)
    if pack:
        _pack_weight(sch, mac, operand(term.b), tile.reg * tile.vec, depth)
    # Accumulate in a tile-sized local buffer: with its indices constant after unrolling,
    # LLVM keeps it in registers across the reduction (a global buffer would be
    # reloaded and stored on every step, as LLVM cannot prove it aliases nothing).
    store = sch.cache_write(mac, 0, "local")
    if epilogue is not None:
        sch.compute_inline(store)
        store = epilogue
    sch.reverse_compute_at(store, outer_loops[-1])
    tile_loop = sch.fuse(*outer_loops)
    sch.parallel(tile_loop)
    sch.unroll(r_i)
    sch.unroll(c_r)
    if depth == 1:
        sch.vectorize(c_v)
    init = sch.decompose_reduction(mac, reduction[0])
    init_loop = sch.get_loops(init)[-1]
    if sch.get(init_loop).kind != tirx.ForKind.VECTORIZED:
        sch.vectorize(init_loop)
    last = sch.get_loops(store)[-1]
    extent = int_extent(sch.get(last).extent)
    if extent is not None and extent % tile.vec == 0 and extent > tile.vec:
        last = sch.split(last, [None, tile.vec])[-1]
    sch.vectorize(last)
    return tile_loop, c_v


def _pad_per_tile(sch, block, tile_loop, lanes: int) -> None:
    """Pad only the input patch a tile reads, inside the tile, into a local buffer.

    A padded copy of the whole input is a heap workspace of up to a few MB allocated on
    every call; the patch (a few rows of ``rows + kernel - 1`` pixels) is a small
    stack buffer, still in L1 when the tile reads it. Overlapping patches are padded
    twice, which costs ~1% of the tile's FMAs.
    """
    from tvm import s_tir

    try:
        sch.compute_at(block, tile_loop)
        sch.set_scope(block, 0, "local")
    except s_tir.ScheduleError:
        parallel_vectorize(sch, block, lanes)
        return
    inner = sch.get_loops(block)[-1]
    extent = int_extent(sch.get(inner).extent)
    if extent is not None and extent % lanes == 0:
        sch.vectorize(sch.split(inner, [None, lanes])[-1])


def _pack_weight(sch, mac, load, width: int, depth: int = 1) -> None:
    """Store the constant operand tile by tile: ``W[.., oc]`` -> ``W[oc // width, .., oc % width]``.

    Then the weights of one output tile are one contiguous stream (the reduction walks
    them in order), instead of ``width`` floats out of every row. With ``depth`` > 1 the
    innermost reduction axis is split too, ``W[.., c, oc]`` -> ``W[oc // width, .., c // depth,
    oc % width, c % depth]``: the ``depth`` values one dot-product lane sums are adjacent. The
    copy is a block marked ``meta_schedule.layout_rewrite_preproc``: SplitLayoutRewritePreproc
    moves it out of the kernel and FoldConstant runs it at compile time.
    """
    stmt = sch.get(mac)
    index = next(i for i, region in enumerate(stmt.reads) if region.source.same_as(load.source))
    copy = sch.cache_read(mac, index, "global")
    sch.annotate(copy, "meta_schedule.layout_rewrite_preproc", True)
    if depth == 1:
        sch.transform_layout(mac, ("read", index), lambda *i: (i[-1] // width, *i[:-1], i[-1] % width))
    else:
        sch.transform_layout(
            mac,
            ("read", index),
            lambda *i: (i[-1] // width, *i[:-2], i[-2] // depth, i[-1] % width, i[-2] % depth),
        )


class _NotTiled(Exception):
    pass


class Kernel(ScheduleRule):
    """``schedule_kernel`` as a DLight rule; ``tiles`` as for ``schedule_kernel``."""

    def __init__(self, lanes: int, tiles: Mapping[str, Tile] | None = None) -> None:
        self.lanes = lanes
        self.tiles = tiles

    def apply(self, func, target, tunable):
        return schedule_kernel(func, self.lanes, self.tiles)

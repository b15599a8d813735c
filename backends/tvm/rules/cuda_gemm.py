"""resdsl's CUDA schedules for multiply-accumulate kernels: a blocked implicit GEMM.

Every conv2d, fused_conv (conv + bias + residual + activation), linear and matmul
PrimFunc has one reduction block ``C[..] += A[..] * B[..]`` plus elementwise
producers (the zero padding) and consumers (the epilogue). ``schedule_gemm``:

1. **Normalises** the reduction to ``C[s, m, n] += A[s, m, k] * B[s, n, k]`` with
   DLight's analysis (``reindex`` + ``transform_layout``): for an NHWC conv, ``m`` is
   the output pixel (batch x rows x columns fused), ``n`` the output channel and
   ``k`` the (kernel row, kernel column, input channel) triple. The im2col matrix is
   never materialised: its reads are inlined into the shared-memory fetch below.
2. **Tiles** it: a thread block computes a ``BM x BN`` output tile with ``TY x TX``
   (16 x 16) threads, each owning a ``TM x TN`` block of accumulators in registers;
   each reduction step loads its ``TM`` inputs and ``TN`` weights from shared memory
   into registers (the weights as one vector load) for ``TM x TN`` FMAs. ``BM`` and
   ``BN`` follow the shape (``choose_tile``): as large as the work allows while the
   grid still fills the GPU. Ragged edges (49 pixels, 197 tokens, 147 = 7x7x3
   reduction elements) are padded by ``pad_einsum``; the padding is predicated away.
3. **Stages** the reduction in steps of ``BK`` = 16: every step, all threads of the
   block copy the ``BM x BK`` input tile (padding and im2col indexing inlined) and
   the ``BK x BN`` weight tile from global to shared memory, each in the order of
   its source's contiguous axis (input channels for NHWC activations, output
   channels for HWIO weights), so consecutive threads load consecutive floats.
4. **Fuses** the epilogue: bias, residual add and activation run on the registers'
   values as the tile is written out.

Grouped and depthwise convolutions (ResNeXt) are no single GEMM: ``schedule_direct_conv``
gives them one output a thread instead. Matrix-vector products (a batch-1 classifier)
stay with DLight's GEMV and Reduction rules, which split the long reduction across
threads; everything else (pooling, transposes, norms) stays with DLight too.
``ImplicitGemm`` (here) and ``DirectConv`` (``cuda_direct``) are the two rules, run before
DLight's defaults (``pipeline.gpu_rules``).

``schedule_gemm(func, bind=False)`` (and ``schedule_direct_conv``) is the same schedule
with every thread binding turned into a serial loop and shared memory into global
memory (see ``serialize``): the index arithmetic, padding and staging are untouched,
and the result compiles for ``llvm``, so a machine without a GPU can check the
schedule's numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tvm.s_tir.dlight.base import ScheduleRule

from .common import RULE_ATTR, int_extent, mac_reduction, serialize, single_reduction

THREADS_Y = 16
THREADS_X = 16
BK = 16
# Thread blocks that keep an H100/H200 (132 SMs) busy: two a multiprocessor.
TARGET_BLOCKS = 264


@dataclass(frozen=True)
class GemmTile:
    """A thread block's output tile ``bm x bn`` and each thread's ``tm x tn`` register tile."""

    tm: int
    tn: int

    @property
    def bm(self) -> int:
        return self.tm * THREADS_Y

    @property
    def bn(self) -> int:
        return self.tn * THREADS_X

    def __str__(self) -> str:
        return f"implicit_gemm {self.bm}x{self.bn}x{BK} thread {self.tm}x{self.tn}"


def choose_tile(m: int | None, n: int, batch: int = 1) -> GemmTile:
    """The largest register tile whose grid still keeps the GPU busy.

    A ``tm x tn`` tile does ``tm * tn`` FMAs for ``tm + tn`` shared-memory loads, so
    larger is better, as long as the grid has ``TARGET_BLOCKS`` blocks (two per SM)
    and pads the pixel axis by at most 15%. Small problems (7x7 and 14x14 maps at
    batch 1) reach neither: they get the smallest row tile, and fewer channels a
    thread until the grid has a block per SM. ``m`` (pixels, or tokens) is None when
    it depends on the symbolic batch: then a middle-sized tile; ``batch`` counts
    independent GEMMs (attention heads).
    """
    widest = next(t for t in (4, 2, 1) if t * THREADS_X <= max(n, THREADS_X))
    if m is None:
        return GemmTile(4, widest)

    def blocks(tile: GemmTile) -> int:
        return batch * math.ceil(m / tile.bm) * math.ceil(n / tile.bn)

    for tm in (8, 4, 2):
        tile = GemmTile(tm, widest)
        if tile.bm <= m and blocks(tile) >= TARGET_BLOCKS and math.ceil(m / tile.bm) * tile.bm <= 1.15 * m:
            return tile
    tile = GemmTile(1, widest)
    while tile.tn > 1 and blocks(tile) < TARGET_BLOCKS // 2:
        tile = GemmTile(1, tile.tn // 2)
    return tile


# ---------------------------------------------------------------- the schedule


def schedule_gemm(func, bind: bool = True):
    """The implicit-GEMM schedule of ``func``, or None when it is not one multiply-accumulate
    reduction with elementwise producers and consumers."""
    from tvm.s_tir.dlight.gpu import matmul as dm

    found = single_reduction(func)
    if found is None:
        return None
    sch, main = found
    stmt = sch.get(main)
    if mac_reduction(sch, main) is not None or dm.get_index_map(stmt) is None:
        return None
    try:
        tile = _tile(sch, main, dm)
    except Exception:  # a primitive's precondition failed (ScheduleError, TVMError): not ours
        return None
    sch.annotate(main, RULE_ATTR, str(tile))
    return sch if bind else serialize(sch)


def _k_contiguous(stmt, operand: int) -> bool:
    """Whether operand ``operand``'s innermost (contiguous) index moves with a reduction iterator."""
    from tvm import tirx
    from tvm.tirx.analysis import undefined_vars

    region = stmt.reads[operand].region
    reduce_vars = {iv.var for iv in stmt.iter_vars if iv.iter_type == tirx.IterVar.CommReduce}
    return any(v in reduce_vars for v in undefined_vars(region[-1].min))


def _rows_at_batch_1(extent) -> int | None:
    """The GEMM's row count (``N * 3136`` pixels) when the symbolic batch ``N`` is 1.

    A module with a symbolic batch has one kernel for every batch size; its tile is the
    one for batch 1, where latency is most exposed: larger batches multiply the grid
    and still fill the GPU, with smaller tiles than a ``--batch 8`` build would get.
    """
    from tvm import tirx

    if isinstance(extent, tirx.IntImm):
        return int(extent.value)
    if isinstance(extent, tirx.Var):
        return 1
    if isinstance(extent, tirx.Mul):
        for a, b in ((extent.a, extent.b), (extent.b, extent.a)):
            if isinstance(a, tirx.Var) and isinstance(b, tirx.IntImm):
                return int(b.value)
    return None


def _tile(sch, main, dm) -> GemmTile:
    stmt = sch.get(main)
    k_inner = [_k_contiguous(stmt, i) for i in (0, 1)]
    reindex = [sch.reindex(main, ("read", 0)), sch.reindex(main, ("read", 1)), sch.reindex(main, ("write", 0))]
    block_map, a_map, b_map, c_map = dm.get_index_map(sch.get(main))
    sch.transform_layout(reindex[0], ("write", 0), a_map)
    sch.transform_layout(reindex[1], ("write", 0), b_map)
    sch.transform_layout(reindex[2], ("read", 0), c_map)
    sch.transform_block_layout(main, block_map)

    s, i, j, k = sch.get_loops(main)
    n = int_extent(sch.get(j).extent)
    tile = choose_tile(_rows_at_batch_1(sch.get(i).extent), n or 64, int_extent(sch.get(s).extent) or 1)
    sch.pad_einsum(main, [1, tile.bm, tile.bn, BK])
    s, i, j, k = sch.get_loops(main)
    bi, ty, tm = sch.split(i, [None, THREADS_Y, tile.tm])
    bj, tx, tn = sch.split(j, [None, THREADS_X, tile.tn])
    ko, ki = sch.split(k, [None, BK])
    sch.reorder(s, bi, bj, ty, tx, ko, ki, tm, tn)
    by = sch.fuse(s, bi)
    sch.bind(by, "blockIdx.y")
    sch.bind(bj, "blockIdx.x")
    sch.bind(ty, "threadIdx.y")
    sch.bind(tx, "threadIdx.x")

    store = sch.cache_write(main, 0, "local")
    sch.reverse_compute_at(store, tx, preserve_unit_loops=True)
    for operand in (0, 1):
        fetch = sch.cache_read(main, operand, "shared")
        sch.compute_at(fetch, ko, preserve_unit_loops=True)
        _cooperative(sch, fetch, k_inner[operand])
        dm.auto_inline_producers(sch, fetch)
    for operand in (0, 1):  # the thread's tm (tn) values of this reduction step, in registers
        regs = sch.cache_read(main, operand, "local")
        sch.compute_at(regs, ki, preserve_unit_loops=True)
        *outer, inner = sch.get_loops(regs)[-3:]
        for loop in outer:
            sch.unroll(loop)
        if not k_inner[operand] and int_extent(sch.get(inner).extent) in (2, 4):
            sch.vectorize(inner)  # consecutive n in shared memory: one 8- or 16-byte load
        else:
            sch.unroll(inner)
    dm.auto_inline_consumer_chain(sch, store)
    sch.unroll(ki)
    sch.unroll(tm)
    sch.unroll(tn)
    rows, cols = sch.get_loops(store)[-2:]
    sch.unroll(rows)
    if n is not None and n % tile.bn == 0 and tile.tn > 1:
        sch.vectorize(cols)  # tn consecutive output channels: one vector store
    else:
        sch.unroll(cols)
    sch.decompose_reduction(main, ko)
    return tile


def _cooperative(sch, fetch, k_inner: bool) -> None:
    """All ``TY x TX`` threads copy the tile, consecutive threads taking consecutive elements
    of the source's contiguous axis: ``k`` when ``k_inner``, else ``m`` or ``n``.

    The shared tile is stored in that order too (``[m][k]``, or ``[k][n]``), so a warp's
    stores are consecutive. A ``[m][k]`` tile's rows are padded to ``BK + 1`` floats:
    the compute loop reads a column of it, and the two rows a warp reads at once
    would otherwise fall into the same bank.
    """
    loops = sch.get_loops(fetch)[-3:]  # (s, m or n, k) of the reindexed operand
    if k_inner:
        sch.storage_align(fetch, 0, axis=1, factor=BK, offset=1)
    else:
        sch.transform_layout(fetch, ("write", 0), lambda s, x, k: (s, k, x))
        sch.reorder(loops[0], loops[2], loops[1])
        loops = [loops[0], loops[2], loops[1]]
    _, ty, tx = sch.split(sch.fuse(*loops), [None, THREADS_Y, THREADS_X])
    sch.bind(ty, "threadIdx.y")
    sch.bind(tx, "threadIdx.x")


class ImplicitGemm(ScheduleRule):
    """``schedule_gemm`` as a DLight rule, for cuda only."""

    def apply(self, func, target, tunable):
        return schedule_gemm(func) if target.kind.name == "cuda" else None

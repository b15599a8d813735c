"""resdsl's CUDA rule for convolutions that are no single GEMM (grouped, depthwise): one output
a thread (``schedule_direct_conv``)."""

from __future__ import annotations

import math

from tvm.s_tir.dlight.base import ScheduleRule

from .common import RULE_ATTR, int_extent, mac_reduction, serialize, single_reduction

DIRECT_THREADS = 256


def schedule_direct_conv(func, bind: bool = True):
    """A convolution that is no single GEMM (grouped: ResNeXt's 3x3 with 4 channels a group;
    depthwise): one output a thread, its short reduction (``K`` = 36 for ResNeXt) unrolled
    in registers, the epilogue fused. None for anything but such a convolution.

    Consecutive threads take consecutive outputs along the innermost axis, so their input
    and output accesses coalesce and the weights they share are broadcast. DLight would
    give it ``GeneralReduction``, built for long rows (softmax, norms): a thread block
    per output, reducing 36 products across 256 threads.
    """
    from tvm import tirx
    from tvm.s_tir.dlight.gpu import matmul as dm

    found = single_reduction(func)
    if found is None:
        return None
    sch, main = found
    stmt = sch.get(main)
    if mac_reduction(sch, main) is not None or not _sliding_window(stmt):
        return None
    nspatial = sum(iv.iter_type == tirx.IterVar.DataPar for iv in stmt.iter_vars)
    try:
        dm.auto_inline_producers(sch, main)
        loops = sch.get_loops(main)
        bx, tx = sch.split(sch.fuse(*loops[:nspatial]), [None, DIRECT_THREADS])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
        store = sch.cache_write(main, 0, "local")
        sch.reverse_compute_at(store, tx, preserve_unit_loops=True)
        dm.auto_inline_consumer_chain(sch, store)
        reduction = sch.get_loops(main)[-(len(loops) - nspatial) :]
        if math.prod(int_extent(sch.get(r).extent) or 1024 for r in reduction) <= 64:
            for r in reduction:
                sch.unroll(r)
        sch.decompose_reduction(main, reduction[0])
    except Exception:  # a primitive's precondition failed: leave it to DLight
        return None
    sch.annotate(main, RULE_ATTR, f"direct_conv {DIRECT_THREADS} threads")
    return sch if bind else serialize(sch)


def _sliding_window(stmt) -> bool:
    """Whether the first operand is read at ``spatial + reduction`` (``y * s + ry``): a convolution."""
    from tvm import tirx
    from tvm.tirx.analysis import undefined_vars

    kinds = {iv.var: iv.iter_type for iv in stmt.iter_vars}
    for r in stmt.reads[0].region:
        used = {kinds.get(v) for v in undefined_vars(r.min)}
        if {tirx.IterVar.DataPar, tirx.IterVar.CommReduce} <= used:
            return True
    return False


class DirectConv(ScheduleRule):
    """``schedule_direct_conv`` as a DLight rule, for cuda only."""

    def apply(self, func, target, tunable):
        return schedule_direct_conv(func) if target.kind.name == "cuda" else None

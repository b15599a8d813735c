"""The CPU rule for softmax and layer norm: the whole function one row at a time."""

from __future__ import annotations

from tvm.s_tir.dlight.base import ScheduleRule

from .common import has_root, int_extent


def schedule_rows(func, lanes: int):
    """Softmax and layer norm over the last axis: the whole function one row at a time.

    Their blocks (row max, exp, row sum, normalise; or mean, variance, normalise)
    share the leading "row" axes and loop over the last one. The elementwise rule
    ran each block over the whole tensor in turn, with the exp inlined twice, so
    every pass re-read the tensor from memory and the polynomial exp ran twice.
    Here one parallel loop walks the rows and every block runs inside it on that
    row; row-sized intermediates (the exps) are local, computed once and still
    in L1 for the next block. None when ``func`` is not of that shape.
    """
    from tvm import s_tir, tirx

    sch = s_tir.Schedule(func)
    if not has_root(sch):
        return None
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    stmts = [sch.get(b) for b in blocks]
    last = stmts[-1]
    nrow = len(last.iter_vars) - 1
    if (
        len(blocks) < 2
        or nrow < 1
        or any(iv.iter_type != tirx.IterVar.DataPar for iv in last.iter_vars)
        or not any(s.iter_vars[-1].iter_type == tirx.IterVar.CommReduce for s in stmts)
    ):
        return None
    rows = [str(iv.dom.extent) for iv in last.iter_vars[:nrow]]
    for stmt in stmts:
        if len(stmt.iter_vars) not in (nrow, nrow + 1) or [str(iv.dom.extent) for iv in stmt.iter_vars[:nrow]] != rows:
            return None
        if any(iv.iter_type != tirx.IterVar.DataPar for iv in stmt.iter_vars[:nrow]):
            return None
    width = int_extent(last.iter_vars[-1].dom.extent)
    try:
        loops = sch.get_loops(blocks[-1])
        row = sch.fuse(*loops[:nrow]) if nrow > 1 else loops[0]
        sch.parallel(row)
        for b in reversed(blocks[:-1]):
            sch.compute_at(b, row)
        for b in blocks[:-1]:
            if len(sch.get(b).iter_vars) == nrow + 1 and sch.get(b).iter_vars[-1].iter_type == tirx.IterVar.DataPar:
                sch.set_scope(b, 0, "local")
        if width is not None and width % lanes == 0:
            for b in blocks:
                stmt = sch.get(b)
                if len(stmt.iter_vars) == nrow + 1 and stmt.iter_vars[-1].iter_type == tirx.IterVar.DataPar:
                    sch.vectorize(sch.split(sch.get_loops(b)[-1], [None, lanes])[-1])
    except s_tir.ScheduleError:
        return None
    return sch


class Rows(ScheduleRule):
    """``schedule_rows`` as a DLight rule."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes

    def apply(self, func, target, tunable):
        return schedule_rows(func, self.lanes)

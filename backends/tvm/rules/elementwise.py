"""The CPU rule for everything that is no kernel: pooling, means, transposes and elementwise
functions get parallel outer loops and a vectorised inner loop."""

from __future__ import annotations

from tvm.s_tir.dlight.base import ScheduleRule

from .common import has_root, parallel_vectorize


def schedule_elementwise(func, lanes: int):
    """Inline what can be inlined, then parallelise and vectorise each remaining block."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    if not has_root(sch):
        return None
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    for b in blocks[:-1]:
        try:
            sch.compute_inline(b)
        except s_tir.ScheduleError:
            pass
    for b in sch.get_child_blocks(sch.get_sblock("root")):
        try:
            parallel_vectorize(sch, b, lanes)
        except s_tir.ScheduleError:
            return None
    return sch


class Elementwise(ScheduleRule):
    """``schedule_elementwise`` as a DLight rule."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes

    def apply(self, func, target, tunable):
        return schedule_elementwise(func, self.lanes)

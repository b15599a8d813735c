"""Which rule schedules each kernel of a CUDA module: resdsl's (and its tile) or DLight's.

For people and tests (``benchmarks/gpu_check.py``): the compiler itself never calls this."""

from __future__ import annotations

from .rules.common import RULE_ATTR, walk
from .rules.cuda_direct import schedule_direct_conv
from .rules.cuda_gemm import schedule_gemm


def default_rules() -> list[tuple[str, object]]:
    """DLight's default GPU rules, in the order Relax's CUDA pipeline applies them."""
    from tvm.s_tir import dlight as dl

    return [
        ("Matmul", dl.gpu.Matmul()),
        ("GEMV", dl.gpu.GEMV()),
        ("Reduction", dl.gpu.Reduction()),
        ("GeneralReduction", dl.gpu.GeneralReduction()),
        ("Fallback", dl.gpu.Fallback()),
    ]


def cuda_schedule_report(mod, target, own_rules: bool = True) -> dict[str, str]:
    """Which rule schedules each PrimFunc of the fused (post-FuseTIR) module ``mod``: the
    pipeline's order, resdsl's rule first; its value is the tile for resdsl's rule."""
    from tvm import tirx

    report = {}
    with target:
        for gv, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc):
                continue
            sch = schedule_gemm(func) if own_rules else None
            if sch is None and own_rules:
                sch = schedule_direct_conv(func)
            if sch is not None:
                report[gv.name_hint] = _annotation(sch)
                continue
            report[gv.name_hint] = next(
                (name for name, rule in default_rules() if rule.apply(func, target, False) is not None), "none"
            )
    return report


def _annotation(sch) -> str:
    from tvm import s_tir

    found = []
    walk(sch.mod["main"].body, s_tir.SBlock, lambda b: found.extend(_tile_note(b)))
    return found[0]


def _tile_note(block) -> list[str]:
    return [str(block.annotations[RULE_ATTR])] if RULE_ATTR in block.annotations else []

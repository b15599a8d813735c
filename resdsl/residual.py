"""What a projection shortcut must do to reconcile two residual operands.

Shared by the DSL (to reject an impossible residual at the line that wrote it)
and by the shortcuts pass (to build the projection).
"""

from __future__ import annotations

from dataclasses import dataclass

from .shapes import Shape, fmt


@dataclass(frozen=True)
class Projection:
    kind: str  # "conv" (NCHW: 1x1 conv with stride) or "dense" (linear on the last axis)
    in_features: int
    out_features: int
    stride: int = 1


def plan(shortcut: Shape, branch: Shape) -> Projection | str:
    """The projection mapping ``shortcut`` to ``branch``'s shape, or why there is none."""
    if len(shortcut) != len(branch):
        return f"ranks differ: {fmt(shortcut)} vs {fmt(branch)}"
    if shortcut[0] != branch[0]:
        return f"batch dimensions differ: {fmt(shortcut)} vs {fmt(branch)}"
    if len(shortcut) == 4:
        strides = set()
        for din, dout in ((shortcut[2], branch[2]), (shortcut[3], branch[3])):
            fits = [s for s in {max(din // dout, 1), -(-din // dout)} if (din - 1) // s + 1 == dout]
            if not fits:
                return (
                    f"spatial size {din} cannot be strided to {dout} (the ratio is not an integer): "
                    f"{fmt(shortcut)} vs {fmt(branch)}"
                )
            strides.add(min(fits))
        if len(strides) != 1:
            return f"height and width shrink by different ratios: {fmt(shortcut)} vs {fmt(branch)}"
        return Projection("conv", shortcut[1], branch[1], strides.pop())
    if len(shortcut) >= 2:
        if shortcut[:-1] != branch[:-1]:
            return f"only the last axis can be projected: {fmt(shortcut)} vs {fmt(branch)}"
        return Projection("dense", shortcut[-1], branch[-1])
    return f"rank-{len(shortcut)} operands cannot be projected"

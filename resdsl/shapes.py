"""Shapes with a symbolic batch dimension.

A shape is a tuple whose entries are ints or the string ``"N"`` (the batch
size, chosen at run time). Keeping the symbol in the IR lets one compiled
artifact serve every batch size.
"""

from __future__ import annotations

Dim = int | str  # an int, or the batch symbol
Shape = tuple  # tuple[Dim, ...]

BATCH = "N"


def fmt(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def broadcast(a: Shape, b: Shape) -> Shape | None:
    """NumPy broadcasting over shapes that may hold the batch symbol; None if they clash."""
    out = []
    for i in range(max(len(a), len(b))):
        da = a[len(a) - 1 - i] if i < len(a) else 1
        db = b[len(b) - 1 - i] if i < len(b) else 1
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            return None
    return tuple(reversed(out))


def numel(shape: Shape, batch: int = 1) -> int:
    n = 1
    for d in shape:
        n *= batch if isinstance(d, str) else d
    return n


def concrete(shape: Shape, batch: int) -> tuple[int, ...]:
    return tuple(batch if isinstance(d, str) else d for d in shape)


def pair(v) -> tuple[int, int]:
    """An int or a 2-sequence as ``(h, w)``: the one reading of kernel, stride, padding and dilation."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return (int(v), int(v))
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"expected an int or a pair, got {v}")
    return v
